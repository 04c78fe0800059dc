"""CPU cost per MPix of networks exported by training/export_backbone.py, beside the shipped student.

    python bench/bench_backbones.py [--mpix 1] [--repeats 3] [--threads 0] [--only resnet18_s8 ...]

Exports each network of NETWORKS with random weights (the cost does not depend on the values) into bench/out/
(once; delete the files to export again), then runs ``segment_cnn`` (the engine call ``segmenter:cnn`` makes,
default tile size and K = 8) over the same real-content raster of --mpix MPix in a child process per run and
prints, as medians over --repeats interleaved rounds: wall seconds and CPU seconds (user + system, all threads)
of the call per MPix, the CPU ratio to the shipped student, and the tiles. Model loading is in the figures,
imports are not; small rasters overstate the cost of the large tiles' edges (ViT: 448 px tiles).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import OUT, ROOT, mosaic

# name: (export_backbone arguments, what it stands for)
NETWORKS = {
    "resnet18_s8": (["--model", "timm:resnet18", "--stride", "8"], "ResNet-18 to layer2, stride 8"),
    "resnet50_s16": (["--model", "timm:resnet50", "--stride", "16"],
                     "ResNet-50 to layer3, stride 16 (remote-sensing ResNet-50 weights fit it)"),
    "effnet_lite0_s16": (["--model", "efficientnet-lite:efficientnet-lite0", "--stride", "16"],
                         "EfficientNet-Lite0 to its last stride-16 block (the training teacher)"),
    "dinov2_vits14": (["--model", "timm:vit_small_patch14_dinov2", "--tile-size", "448"],
                      "DINOv2 ViT-S/14, all 12 blocks, 448 px tiles blended over 112 px"),
}
STUDENT = ROOT / "onnx_models" / "student_s4_v1.onnx"

RUN = """
import json, time
from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
start, cpu = time.perf_counter(), time.process_time()
result = segment_cnn({source!r}, {output!r}, {model!r}, segments=8, threads={threads})
print(json.dumps(dict(wall=time.perf_counter() - start, cpu=time.process_time() - cpu, tiles=result.tiles)))
"""


def export(name, arguments):
    path = OUT / f"backbone_{name}.onnx"
    if not path.exists():
        completed = subprocess.run([sys.executable, "-m", "training.export_backbone", *arguments, "--random-weights",
                                    "--out", str(path)], cwd=ROOT, capture_output=True, text=True)
        if completed.returncode:
            raise SystemExit(f"export of {name} failed:\n{completed.stdout}{completed.stderr[-3000:]}")
    return path


def run(model, source, threads):
    """(wall s, CPU s, tiles) of one segment_cnn call in a child process (CPU: all the process's threads)."""
    output = OUT / f"bench_backbones_{os.getpid()}.tif"
    code = RUN.format(source=str(source), output=str(output), model=str(model), threads=threads)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(completed.stderr[-2000:])
    inner = json.loads(completed.stdout.strip().splitlines()[-1])
    return inner["wall"], inner["cpu"], inner["tiles"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpix", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="THREADS of segmenter:cnn (0 = one per core)")
    parser.add_argument("--only", nargs="*", help="names of NETWORKS to run (default all)")
    args = parser.parse_args()
    source = mosaic(args.mpix)
    models = {"student_s4_v1 (shipped)": (STUDENT, "the shipped stride-4 student")}
    for name, (arguments, text) in NETWORKS.items():
        if not args.only or name in args.only:
            models[name] = (export(name, arguments), text)
    runs = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, (path, _) in models.items():
            runs[name].append(run(path, source, args.threads))
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"segment_cnn, K = 8, default tiles, THREADS {args.threads}, {args.mpix:g} MPix of the Kampala mosaic, "
          f"{cores} cores, load average {load:.1f} at the end; medians of {args.repeats} interleaved runs")
    print(f"{'network':<26} {'wall s/MPix':>12} {'CPU s/MPix':>11} {'x student':>10} {'tiles':>6}  what")
    reference = None
    for name, (_, text) in models.items():
        wall = statistics.median(r[0] for r in runs[name]) / args.mpix
        cpu = statistics.median(r[1] for r in runs[name]) / args.mpix
        reference = reference or cpu
        print(f"{name:<26} {wall:>12.2f} {cpu:>11.2f} {cpu / reference:>10.1f} {runs[name][0][2]:>6}  {text}")
    print("(both from the call to segment_cnn to its return, in a fresh process: model loading included, imports "
          "not; CPU = user + system time of all its threads)")


if __name__ == "__main__":
    main()
