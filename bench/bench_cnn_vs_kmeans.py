"""segmenter:cnn beside segmenter:kmeans on the same raster: end to end, start-up excluded, medians of interleaved
runs, and optionally the same two calls of another version of the engine in the same rounds (before / after).

    python bench/bench_cnn_vs_kmeans.py [--mpix 25] [--repeats 5] [--before main] [--model M.onnx]

Each run is a fresh process that imports the engine, then times the engine call the algorithm makes with its
defaults (``segment_cnn`` with the shipped model, ``segment_kmeans``): wall seconds, CPU seconds (all threads) and
the time of each stage. Rounds run every command once in turn, so a change in the machine's load hits all alike;
the table gives medians over the rounds and the cnn / kmeans ratio of the medians. Each round also runs ONNX
Runtime alone with the model (a few batch x tile geometries; CPU sessions as segment_cnn makes them, as many
single-threaded runs at a time as cores, and one session over as many intra-op threads): the best of them is the
ceiling the embedding stage is compared with (raster MPix per second of the stage, so the halo counts as loss).

``--before REF`` exports the engine of git revision REF (``git archive``) to bench/out/before-REF/ and runs it
through PYTHONPATH in the same rounds: the figures of that version and of this checkout, measured side by side.
The 25 MPix raster is the Kampala mosaic of bench/common.py (cached in bench/out/).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import ENGINE_MODULE, OUT, ROOT, export_engine, mosaic

MODEL = ROOT / "onnx_models" / "student_s4_v1.onnx"

CHILD = ENGINE_MODULE + """
import json, sys, time
Progress = engine('runtime.progress').Progress
marks, last = [], [None]
def report(fraction, message):
    stage = message.split(" (")[0]
    if stage != last[0]:
        marks.append((stage, time.perf_counter()))
        last[0] = stage
method, source, output, model = sys.argv[1:5]
if method == "cnn":
    run = engine('segmentation.cnn_segmentation').segment_cnn
    arguments = (source, output, model)
else:
    run = engine('segmentation.kmeans_segmentation').segment_kmeans
    arguments = (source, output)
import map_segmenter
start, cpu = time.perf_counter(), time.process_time()
run(*arguments, progress=Progress(report=report))
end, cpu = time.perf_counter(), time.process_time() - cpu
stages = {}
for (name, t0), (_, t1) in zip(marks, marks[1:] + [("end", end)]):
    stages[name] = stages.get(name, 0.0) + t1 - t0
print(json.dumps(dict(seconds=end - start, cpu=cpu, stages=stages, engine=map_segmenter.__file__)))
"""


CEILING = ENGINE_MODULE + """
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
onnx_runtime = engine('backends.onnx_runtime')
model_path, geometries = sys.argv[1], json.loads(sys.argv[2])
runs = onnx_runtime.cpu_cores()
arrangements = {f"{runs} runs x 1 thread (as segment_cnn)": onnx_runtime.load_model(model_path, "cpu", 0),
                f"1 run x {runs} threads": None}
ort = onnx_runtime.import_onnxruntime()
options = onnx_runtime._session_options(ort, runs)
arrangements[f"1 run x {runs} threads"] = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
results = {}
for name, runner in arrangements.items():
    run = runner.run if hasattr(runner, "info") else (lambda b, s=runner: s.run(None, {"rgb": b})[0])
    parallel = runs if hasattr(runner, "info") else 1
    for batch, tile in geometries:
        x = rng.uniform(-2, 2, (batch, 3, tile, tile)).astype(np.float32)
        run(x)
        calls = max(parallel, int(12e6 / (batch * tile * tile)) // parallel * parallel)
        start = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda _: run(x), range(calls)))
        results[f"{name}: {batch}x{tile}"] = calls * batch * tile * tile / (time.perf_counter() - start) / 1e6
print(json.dumps(results))
"""
GEOMETRIES = [(1, 512), (4, 512), (1, 768), (1, 1024), (1, 2048)]


def python_child(code, arguments, pythonpath=None, failure="the run failed", output=None):
    """What ``python -c code arguments`` printed last, parsed as JSON; ``pythonpath`` (another version's engine)
    comes first on its PYTHONPATH; the raster ``output`` it wrote (and its .qml) is removed."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    completed = subprocess.run([sys.executable, "-c", code, *map(str, arguments)], capture_output=True, text=True,
                               env=env)
    if completed.returncode != 0:
        raise SystemExit(f"{failure}:\n{completed.stderr[-3000:]}")
    for leftover in (output, output.with_suffix(".qml")) if output else ():
        leftover.unlink(missing_ok=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def engines(before):
    """{version: folder to put on PYTHONPATH (None: this checkout)}, ``before``'s engine first when given."""
    versions = {"this checkout": None}
    if before:
        versions = {before: export_engine(before), **versions}
    return versions


def ceiling(model, pythonpath=None):
    """ONNX Runtime alone with ``model``: MPix/s of network input (halo included) per batch x tile geometry and
    thread arrangement, random input, the same session options as segment_cnn."""
    return python_child(CEILING, [model, json.dumps(GEOMETRIES)], pythonpath, "ONNX Runtime alone failed")


def run(method, source, model, pythonpath=None):
    output = OUT / f"versus_{method}.tif"
    return python_child(CHILD, [method, source, output, model], pythonpath, f"{method} failed", output)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpix", type=float, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--before", help="git revision whose engine runs in the same rounds (e.g. main)")
    args = parser.parse_args()
    source = mosaic(args.mpix)
    versions = engines(args.before)
    commands = [(version, method) for version in versions for method in ("kmeans", "cnn")]
    runs = {command: [] for command in commands}
    loads = [os.getloadavg()[0]]
    alone = []
    for _ in range(args.repeats):
        for version, method in commands:
            runs[version, method].append(run(method, source, args.model, versions[version]))
        alone.append(ceiling(args.model))
        loads.append(os.getloadavg()[0])
    print(f"{source.name}: {args.mpix:g} MPix; model {args.model.name}; {os.cpu_count()} CPUs; load average "
          f"{min(loads):.1f}-{max(loads):.1f}; medians of {args.repeats} interleaved rounds, start-up excluded")
    print(f"{'version':<16} {'method':<7} {'wall s':>7} {'CPU s':>6} {'cnn/kmeans':>10}  stages (median s)")
    embedding_rates = {}
    for version in versions:
        medians = {}
        for method in ("kmeans", "cnn"):
            results = runs[version, method]
            medians[method] = statistics.median(r["seconds"] for r in results)
            cpu = statistics.median(r["cpu"] for r in results)
            names = list(results[0]["stages"])
            stages = ", ".join(f"{name} {statistics.median(r['stages'].get(name, 0) for r in results):.2f}"
                               for name in names)
            ratio = f"{medians['cnn'] / medians['kmeans']:.2f}" if method == "cnn" else ""
            print(f"{version:<16} {method:<7} {medians[method]:7.2f} {cpu:6.2f} {ratio:>10}  {stages}")
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs[version, "cnn"])
        print(f"{'':<42}  (cnn runs: {each} s)")
        stage = statistics.median(r["stages"].get("Computing embeddings", float("nan")) for r in runs[version, "cnn"])
        embedding_rates[version] = args.mpix / stage
    geometry = {name: statistics.median(round_[name] for round_ in alone) for name in alone[0]}
    best_name = max(geometry, key=geometry.get)
    print("ONNX Runtime alone (this checkout's session options, random input, MPix/s of network input incl. "
          "halo; medians over the rounds):")
    for name, rate in geometry.items():
        print(f"  {name:<48} {rate:6.1f}{'  <- best' if name == best_name else ''}")
    for version, rate in embedding_rates.items():
        print(f"embedding stage, {version}: {rate:.1f} MPix/s of raster ({args.mpix:g} MPix / median stage s) = "
              f"{100 * rate / geometry[best_name]:.0f} % of ONNX Runtime's best ({geometry[best_name]:.1f})")


if __name__ == "__main__":
    main()
