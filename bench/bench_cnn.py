"""segmenter:cnn speed, efficiency and memory on 25 MPix of real imagery with the shipped model.

    python bench/bench_cnn.py [--mpix 25] [--model tests/models/student_s4_untrained.onnx] [--threads 0]
                              [--tiles 8] [--repeats 3] [--tile-sizes 512] [--no-int8]

Prints, all measured in this run:
  * end to end: ``segment_cnn`` (the engine call ``segmenter:cnn`` makes, defaults) in its own process: wall
    time, MPix/s, time per stage and peak RSS (target <= 1.5 GB);
  * the network alone on the same real 512 px tiles: ONNX Runtime vs torch eager running the same weights
    (read from the .onnx file; target ORT >= 1.3x torch), achieved GFLOP/s from the FLOPs counted on the
    ONNX graph, against the CPU's fp32 peak measured with a large numpy matmul (target >= 50 %);
  * dynamic int8 quantisation (onnxruntime.quantization.quantize_dynamic): network speed and end-to-end
    label agreement with the fp32 model.
The 25 MPix raster is a mosaic of the Kampala sample (bench/common.py, cached in bench/out/).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from osgeo import gdal

from map_segmenter.engine.backends import model_contract, onnx_runtime

from common import OUT, ROOT, mosaic

MODEL = ROOT / "tests" / "models" / "student_s4_untrained.onnx"

END_TO_END = """
import json, time
from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
from map_segmenter.engine.runtime.progress import Progress
marks = []
last = [None]
def report(fraction, message):
    stage = message.split(" (")[0]
    if stage != last[0]:
        marks.append((stage, time.perf_counter()))
        last[0] = stage
start = time.perf_counter()
result = segment_cnn({source!r}, {output!r}, {model!r}, threads={threads}, tile_size={tile_size},
                     progress=Progress(report=report))
end = time.perf_counter()
stages = {{}}
for (name, t0), (_, t1) in zip(marks, marks[1:] + [("end", end)]):
    stages[name] = stages.get(name, 0.0) + t1 - t0
print(json.dumps(dict(seconds=end - start, stages=stages, tiles=result.tiles, provider=result.provider)))
"""

PEAK = """
import time, numpy as np
n = {n}
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
b = np.random.default_rng(1).random((n, n), dtype=np.float32)
a @ b
best = 0.0
for _ in range({repeats}):
    t = time.perf_counter(); a @ b; best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
print(best)
"""


def run_child(code):
    """(stdout, wall s, peak RSS MB) of ``python -c code`` in its own process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(process.stderr.read().decode()[-3000:])
    return stdout.decode(), time.perf_counter() - start, usage.ru_maxrss / 1024


def fp32_peak(n=4096, repeats=5, threads=None):
    """GFLOP/s of a large float32 numpy matmul in a fresh process (importing torch slows OpenBLAS here)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads)) if threads else None
    process = subprocess.run([sys.executable, "-c", PEAK.format(n=n, repeats=repeats)], capture_output=True,
                             text=True, env=env, check=True)
    return float(process.stdout.strip())


def peaks(cores):
    """(all-thread matmul GFLOP/s, one-thread matmul GFLOP/s x cores): on a loaded machine the threaded
    matmul suffers most from other processes (its threads wait for each other), so both are reported."""
    return fp32_peak(), fp32_peak(threads=1) * cores


def conv_flops_per_pixel(path, size=512):
    """2 x multiply-adds of every Conv/ConvInteger per input pixel, from the ONNX graph with inferred shapes."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    graph.input[0].type.tensor_type.shape.dim[2].dim_value = size
    graph.input[0].type.tensor_type.shape.dim[3].dim_value = size
    inferred = shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
              list(inferred.value_info) + list(inferred.output) + list(inferred.input)}
    weights = {w.name: list(w.dims) for w in graph.initializer}
    total = 0.0
    for node in graph.node:
        if node.op_type in ("Conv", "ConvInteger"):
            cout, cin_per_group, kh, kw = weights[node.input[1]]
            _, _, oh, ow = shapes[node.output[0]]
            total += 2.0 * cout * cin_per_group * kh * kw * oh * ow
    return total / size**2


class TorchFromOnnx:
    """Torch eager execution of an ONNX graph of Conv / Relu / Add (the shipped architecture), same weights."""

    def __init__(self, path):
        import onnx
        import torch
        from onnx import numpy_helper

        model = onnx.load(str(path))
        self.torch = torch
        self.weights = {w.name: torch.from_numpy(numpy_helper.to_array(w).copy()) for w in model.graph.initializer}
        self.nodes = []
        for node in model.graph.node:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type not in ("Conv", "Relu", "Add"):
                raise SystemExit(f"torch comparison supports Conv, Relu and Add; the model has {node.op_type}")
            self.nodes.append((node.op_type, list(node.input), node.output[0], attributes))

    def __call__(self, batch):
        functional = self.torch.nn.functional
        values = {model_contract.INPUT_NAME: batch}
        for op, inputs, output, attributes in self.nodes:
            if op == "Conv":
                pads = attributes.get("pads", [0, 0, 0, 0])
                bias = self.weights[inputs[2]] if len(inputs) > 2 else None
                values[output] = functional.conv2d(values[inputs[0]], self.weights[inputs[1]], bias,
                                                   attributes.get("strides", [1, 1]), pads[:2],
                                                   attributes.get("dilations", [1, 1]), attributes.get("group", 1))
            elif op == "Relu":
                values[output] = functional.relu(values[inputs[0]])
            else:
                values[output] = values[inputs[0]] + values[inputs[1]]
        return values[model_contract.OUTPUT_NAME]


def real_tiles(source, count, size, info):
    """``count`` normalised size x size tiles read from the raster (same input for every runtime)."""
    dataset = gdal.Open(str(source))
    rng = np.random.default_rng(0)
    scale, offset = onnx_runtime.normaliser(info)
    tiles = []
    for _ in range(count):
        x = int(rng.integers(0, dataset.RasterXSize - size)) // 4 * 4
        y = int(rng.integers(0, dataset.RasterYSize - size)) // 4 * 4
        pixels = dataset.ReadAsArray(x, y, size, size, band_list=[1, 2, 3]).astype(np.float32)
        tiles.append(pixels * scale + offset)
    return np.stack(tiles)


def time_network(function, tiles, batch, repeats, at_a_time=1):
    """Median seconds to push all ``tiles`` through ``function`` in batches of ``batch``, ``at_a_time`` batches
    at once on as many threads (as segment_cnn runs ONNX Runtime on the CPU: one single-threaded run per core)."""
    function(tiles[:batch])  # warm-up (allocations, kernel choice)
    batches = [tiles[index : index + batch] for index in range(0, len(tiles), batch)]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        if at_a_time > 1:
            with ThreadPoolExecutor(at_a_time) as pool:
                list(pool.map(function, batches))
        else:
            for part in batches:
                function(part)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def quantised_copy(path):
    """Dynamic int8 quantisation of the model, contract metadata kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = OUT / (Path(path).stem + "_int8.onnx")
    quantize_dynamic(str(path), str(target), weight_type=QuantType.QUInt8)
    model = onnx.load(str(target))
    source = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    del model.metadata_props[:]
    for key, value in source.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))
    return target, sorted({n.op_type for n in model.graph.node})


def end_to_end(source, output, model, threads, tile_size=0):
    code = END_TO_END.format(source=str(source), output=str(output), model=str(model),
                             threads=threads, tile_size=tile_size)
    out, wall, rss = run_child(code)
    report = json.loads(out.strip().splitlines()[-1])
    report.update(wall=wall, rss=rss)
    return report


def agreement(first, second):
    """(share of pixels with the same id, share after the best one-to-one matching of ids) over valid pixels."""
    from scipy.optimize import linear_sum_assignment

    a, b = gdal.Open(str(first)), gdal.Open(str(second))
    k = int(max(a.GetRasterBand(1).ComputeRasterMinMax(False)[1], b.GetRasterBand(1).ComputeRasterMinMax(False)[1]))
    matrix = np.zeros((k + 1, k + 1), np.int64)
    same = total = 0
    for y in range(0, a.RasterYSize, 1024):
        rows = min(1024, a.RasterYSize - y)
        la, lb = a.ReadAsArray(0, y, a.RasterXSize, rows), b.ReadAsArray(0, y, a.RasterXSize, rows)
        matrix += np.bincount(la.ravel().astype(np.int64) * (k + 1) + lb.ravel(), minlength=(k + 1) ** 2).reshape(
            k + 1, k + 1)
        same += int((la == lb).sum())
        total += la.size
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return same / total, matrix[rows, cols].sum() / total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpix", type=float, default=25)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--threads", type=int, default=0, help="THREADS: networks at a time on the CPU (0 = one per "
                                                               "core), each on one thread")
    parser.add_argument("--tiles", type=int, default=8, help="real 512 px tiles for the network-only timing")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[0], help="end-to-end TILE_SIZE values")
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args()
    threads = args.threads or os.cpu_count()
    source = mosaic(args.mpix)
    dataset = gdal.Open(str(source))
    mpix = dataset.RasterXSize * dataset.RasterYSize / 1e6
    print(f"raster {source.name}: {dataset.RasterXSize} x {dataset.RasterYSize} px = {mpix:.1f} MPix; "
          f"model {args.model.name}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")

    cores = os.cpu_count()
    measured = [peaks(cores)]
    flops = conv_flops_per_pixel(args.model)
    model = onnx_runtime.load_model(str(args.model), "cpu", args.threads)
    print(f"model: {flops:.0f} FLOP per input pixel (Conv nodes of the ONNX graph); metadata says "
          f"{model.info.metadata.get('flops_per_pixel')}; halo {model.info.halo} px")

    # --- end to end --------------------------------------------------------------------------------------
    labels = OUT / "cnn_labels.tif"
    for tile_size in args.tile_sizes:
        runs = [end_to_end(source, labels, args.model, args.threads, tile_size) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["wall"])
        layout_tile = tile_size or model.info.tile_size
        core = layout_tile - 2 * model.info.halo
        halo_factor = (layout_tile / core) ** 2
        print(f"\nEND TO END segment_cnn (TILE_SIZE {layout_tile}, {best['tiles']} tiles, halo overhead x"
              f"{halo_factor:.2f}, {best['provider']}), best of {args.repeats} processes:")
        print(f"  wall {best['wall']:.2f} s (median {statistics.median(r['wall'] for r in runs):.2f} s) = "
              f"{mpix / best['wall']:.2f} MPix/s; peak RSS {max(r['rss'] for r in runs):.0f} MB "
              f"(target <= 1536 MB: {'PASS' if max(r['rss'] for r in runs) <= 1536 else 'FAIL'})")
        print("  stages: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in best["stages"].items()))
        embed = best["stages"].get("Computing embeddings")
        if embed:
            print(f"  embedding pass alone: {mpix / embed:.2f} MPix/s, "
                  f"{flops * halo_factor * mpix * 1e6 / embed / 1e9:.1f} GFLOP/s of network work incl. halo")

    # --- network alone: ORT vs torch eager ---------------------------------------------------------------
    tiles = real_tiles(source, args.tiles, 512, model.info)
    pixels = tiles.shape[0] * tiles.shape[2] * tiles.shape[3]
    ort_seconds = time_network(model.run, tiles, args.batch, args.repeats, model.runs)
    import torch

    torch.set_num_threads(threads)
    eager = TorchFromOnnx(args.model)
    with torch.inference_mode():
        expected = model.run(tiles[:1])
        got = eager(torch.from_numpy(tiles[:1])).numpy()
        error = float(np.abs(got - expected).max())
        torch_seconds = time_network(lambda b: eager(torch.from_numpy(b)), tiles, args.batch, args.repeats)
        last = torch.from_numpy(tiles).contiguous(memory_format=torch.channels_last)
        torch_cl_seconds = time_network(lambda b: eager(b), last, args.batch, args.repeats)
    measured.append(peaks(cores))
    peak = max(max(pair) for pair in measured)
    ort_gflops = flops * pixels / ort_seconds / 1e9
    print(f"\nNETWORK ALONE on {args.tiles} real 512 x 512 tiles, batch {args.batch}, {threads} threads "
          f"(median of {args.repeats}); torch output = ORT output within {error:.1e}:")
    print(f"  onnxruntime {onnx_runtime.import_onnxruntime().__version__}: {pixels / ort_seconds / 1e6:6.2f} "
          f"MPix/s  {ort_gflops:6.1f} GFLOP/s")
    print(f"  torch {torch.__version__} eager NCHW: {pixels / torch_seconds / 1e6:6.2f} MPix/s  "
          f"{flops * pixels / torch_seconds / 1e9:6.1f} GFLOP/s")
    print(f"  torch eager channels_last: {pixels / torch_cl_seconds / 1e6:6.2f} MPix/s  "
          f"{flops * pixels / torch_cl_seconds / 1e9:6.1f} GFLOP/s")
    ratio = torch_seconds / ort_seconds
    print(f"  ORT / torch eager: x{ratio:.2f} (target >= 1.3: {'PASS' if ratio >= 1.3 else 'FAIL'}); "
          f"vs channels_last x{torch_cl_seconds / ort_seconds:.2f}")
    print(f"  fp32 peak, numpy {np.__version__} float32 matmul 4096^2 in fresh processes at start / end: "
          f"{cores} threads {measured[0][0]:.0f} / {measured[1][0]:.0f} GFLOP/s, 1 thread x {cores} "
          f"{measured[0][1]:.0f} / {measured[1][1]:.0f} GFLOP/s -> peak {peak:.0f} GFLOP/s; ORT reaches "
          f"{100 * ort_gflops / peak:.0f} % (target >= 50 %: {'PASS' if ort_gflops >= 0.5 * peak else 'FAIL'})")

    # --- int8 --------------------------------------------------------------------------------------------
    if not args.no_int8:
        quantised, ops = quantised_copy(args.model)
        q_model = onnx_runtime.load_model(str(quantised), "cpu", args.threads)
        q_seconds = time_network(q_model.run, tiles, args.batch, args.repeats, q_model.runs)
        q_error = float(np.abs(q_model.run(tiles[:1]) - expected).max() / np.abs(expected).max())
        q_labels = OUT / "cnn_labels_int8.tif"
        q_run = end_to_end(source, q_labels, quantised, args.threads)
        fp_run = end_to_end(source, labels, args.model, args.threads)
        same, matched = agreement(labels, q_labels)
        print(f"\nINT8 (quantize_dynamic, ops {', '.join(ops)}; {quantised.stat().st_size / 1e6:.2f} MB vs "
              f"{args.model.stat().st_size / 1e6:.2f} MB):")
        print(f"  network alone: {pixels / q_seconds / 1e6:.2f} MPix/s = x{ort_seconds / q_seconds:.2f} the fp32 "
              f"speed; max embedding error {100 * q_error:.1f} % of the largest value")
        print(f"  end to end: {mpix / q_run['wall']:.2f} MPix/s (fp32 in the same minute: "
              f"{mpix / fp_run['wall']:.2f}); labels: {100 * same:.2f} % same id, {100 * matched:.2f} % after "
              f"matching ids one to one")
        for leftover in (q_labels, q_labels.with_suffix(".qml")):
            leftover.unlink(missing_ok=True)
    for leftover in (labels, labels.with_suffix(".qml")):
        leftover.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
