"""Benchmark segmenter:knn_refine on a large real-content raster (not a test), beside kmeans and blur.

Builds (once, cached under bench/out/knn/) a ~100 MPix mosaic by tiling the Kampala orthophoto in a VRT, segments it
with segment_kmeans (block 4, K 8, FEATURES written), then times in interleaved rounds, each run in its own
process (median wall time, largest peak RSS):
  - segment_kmeans with FEATURES (the step that makes knn_refine's inputs),
  - blur_labels majority medium of its labels,
  - refine_knn with default parameters (the graph formulation), and with --predecessor also the predecessor's
    formulation with its defaults,
  - gdal_translate of the labels (the cost of reading + writing a label raster).
With --query-stage, also the predecessor's query stage with cKDTree vs brute force on the same index.
Usage:
    python bench/bench_knn.py [--mpix 100] [--repeats 3] [--predecessor] [--query-stage]
Targets on 100 MPix (issue 15): knn_refine <= 12 s on 2 cores and peak RSS <= 500 MB, beside kmeans and blur.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "knn"
MOSAIC = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"

from osgeo import gdal  # noqa: E402

from common import in_child  # noqa: E402

gdal.UseExceptions()


def tiled_vrt(path, side):
    """A VRT of ``side`` x ``side`` px that repeats the Kampala mosaic (real content, any size)."""
    source = gdal.Open(str(MOSAIC))
    width, height, bands = source.RasterXSize, source.RasterYSize, source.RasterCount
    x0, dx, _, y0, _, dy = source.GetGeoTransform()
    lines = [f'<VRTDataset rasterXSize="{side}" rasterYSize="{side}">',
             f"  <SRS>{escape(source.GetProjection())}</SRS>",
             f"  <GeoTransform>{x0}, {dx}, 0, {y0}, 0, {dy}</GeoTransform>"]
    for band in range(1, bands + 1):
        lines.append(f'  <VRTRasterBand dataType="Byte" band="{band}">')
        lines.append(f"    <ColorInterp>{['Red', 'Green', 'Blue'][band - 1]}</ColorInterp>")
        for y in range(0, side, height):
            for x in range(0, side, width):
                w, h = min(width, side - x), min(height, side - y)
                lines += [
                    "    <SimpleSource>",
                    f'      <SourceFilename relativeToVRT="0">{MOSAIC}</SourceFilename>',
                    f"      <SourceBand>{band}</SourceBand>",
                    f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                    f'      <DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/>',
                    "    </SimpleSource>",
                ]
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    Path(path).write_text("\n".join(lines))
    return str(path)


def inputs(mpix):
    """(image, labels, features) paths for a square raster of about ``mpix`` MPix."""
    side = int(round(math.sqrt(mpix * 1e6)))
    return tuple(OUT / f"kampala_{side}{suffix}.tif" for suffix in ("", "_labels", "_features"))


def prepare(mpix):
    """Cached inputs (``inputs``), made by a child process (common.in_child: the peaks measured here stay the
    commands' own)."""
    paths = inputs(mpix)
    if not all(path.exists() for path in paths):
        in_child("bench_knn:make_inputs", mpix)
    return tuple(str(path) for path in paths)


def make_inputs(mpix):
    """``prepare``'s files, made in this process."""
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

    side = int(round(math.sqrt(mpix * 1e6)))
    OUT.mkdir(parents=True, exist_ok=True)
    image, labels, features = inputs(mpix)
    if not image.exists():
        vrt = tiled_vrt(OUT / f"kampala_{side}.vrt", side)
        start = time.perf_counter()
        gdal.Translate(str(image), vrt, creationOptions=["TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1"])
        print(f"prepared {image.name} ({side} x {side}) in {time.perf_counter() - start:.1f} s", flush=True)
    if not (labels.exists() and features.exists()):
        start = time.perf_counter()
        segment_kmeans(str(image), str(labels), segments=8, block=4, seed=0, features_path=str(features))
        print(f"segment_kmeans (K 8, block 4) in {time.perf_counter() - start:.1f} s", flush=True)



CHILD = """
import json, resource, time
start = time.perf_counter()
{code}
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(seconds=time.perf_counter() - start, cpu=usage.ru_utime + usage.ru_stime)))
"""


def child(code):
    return [sys.executable, "-c", CHILD.format(code=code)]


def run_measured(command):
    """Run ``command``; (wall seconds, peak RSS MB of that process, stdout)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{command[0]} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def blas_brute(index_points, points, k, chunk=512):
    """Brute force the fast way (BLAS distances + argpartition): not usable by the engine, whose per-point results
    must not depend on the batch, but the fair speed reference."""
    import numpy as np

    norms = (index_points * index_points).sum(axis=1)
    result = np.empty((len(points), k), np.intp)
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        distance = norms[None, :] - 2.0 * block @ index_points.T
        nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(distance, nearest, axis=1), axis=1)
        result[start : start + len(block)] = np.take_along_axis(nearest, order, axis=1)
    return result


def query_stage(labels, features, tree_points, brute_points):
    """Time the query stage (k nearest index points of every block) with cKDTree and by brute force."""
    import numpy as np

    from map_segmenter.engine.rasters.feature_raster import FeatureRaster
    from map_segmenter.engine.rasters.labels import LabelRaster
    from map_segmenter.engine.rasters.windows import Window
    from map_segmenter.engine.runtime.progress import Progress
    from map_segmenter.engine.steps import knn_common, knn_global
    from map_segmenter.engine.steps.neighbours import NeighbourIndex, brute_force
    from map_segmenter.engine.steps.window_step import Executor

    # the engine's own index, built the way refine_knn's earlier formulation builds it (its defaults)
    label_raster, feature_raster = LabelRaster.open(labels), FeatureRaster.open(features)
    channels = feature_raster.dataset.RasterCount
    grid = knn_common._check_grids(label_raster.dataset, feature_raster.dataset, labels, features,
                                   feature_raster.meta)
    centres, segments, _ = knn_common._metadata_centres(label_raster.meta, feature_raster.meta, channels)
    reader = knn_common._Reader(label_raster, feature_raster, grid)
    everything = [Window(0, 0, grid.width, grid.height)]
    with Executor(None, Progress()) as executor:
        step = knn_common.ScanStep(labels, features, grid, False, segments)
        counts, _ = knn_common.scan(executor.map(step, everything, reader), False)
    counts = np.pad(counts, (0, segments + 1 - len(counts)))[1:]
    index = knn_global._sample(reader, everything, knn_global._quotas(counts, 120_000), 0, Progress())
    model = knn_global._Model(centres=centres, scale2=knn_global._scale2(index[0], index[1], centres),
                              temperature=2.0, spatial_weight=0.08, mix=0.65, neighbours=12, grid=grid)
    index_points = knn_global.embed(index[0], index[2], index[3], model)
    total_blocks = int(counts.sum())
    # query points: consecutive blocks (raster order, as the engine queries them) from the middle of the raster
    rows = min(-(-tree_points // grid.grid_w) * grid.stride, grid.height // 2 // grid.stride * grid.stride)
    middle = Window(0, (grid.height - rows) // 2 // grid.stride * grid.stride, grid.width, rows)
    _, _, qrows, qcols, values, _ = reader.cells(middle)
    queries = knn_global.embed(values, qrows, qcols, model)[:tree_points]
    results = {}
    for workers in (1, -1):
        tree = NeighbourIndex(index_points, workers=workers)
        start = time.perf_counter()
        found = tree.query(queries, 12)
        results[workers] = (time.perf_counter() - start) / len(queries)
    start = time.perf_counter()
    brute = brute_force(index_points, queries[:brute_points], 12)
    brute_per_point = (time.perf_counter() - start) / brute_points
    start = time.perf_counter()
    blas_brute(index_points, queries[:brute_points], 12)
    blas_per_point = (time.perf_counter() - start) / brute_points
    # as sets: where two index points are at nearly the same distance, the order can differ by rounding
    agree = float(np.mean(np.all(np.sort(brute, axis=1) == np.sort(found[:brute_points], axis=1), axis=1)))
    return dict(blocks=total_blocks, index=len(index_points), tree1=results[1], tree_all=results[-1],
                brute=brute_per_point, blas=blas_per_point, agree=agree, tree_points=len(queries),
                brute_points=brute_points)


def main():
    import statistics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpix", type=float, default=100.0, help="raster size in megapixels (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (each command once per round)")
    parser.add_argument("--predecessor", action="store_true", help="also time the predecessor's formulation")
    parser.add_argument("--query-stage", action="store_true", help="also time the predecessor's query stage")
    parser.add_argument("--tree-points", type=int, default=200_000, help="query points timed with cKDTree")
    parser.add_argument("--brute-points", type=int, default=2_000, help="query points timed by brute force")
    args = parser.parse_args()
    image, labels, features = prepare(args.mpix)
    side = gdal.Open(labels).RasterXSize
    print(f"\nknn_refine benchmark: {side} x {side} px = {side * side / 1e6:.0f} MPix, block-4 features, K 8; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; medians of {args.repeats} "
          f"interleaved rounds, each run in its own process", flush=True)
    scratch = {name: str(OUT / f"bench_{name}_{side}.tif") for name in ("kmeans", "features", "blur", "knn", "old",
                                                                          "copy")}
    commands = {
        "kmeans (+ FEATURES)": child(
            "from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans; "
            f"segment_kmeans({image!r}, {scratch['kmeans']!r}, segments=8, block=4, seed=0, "
            f"features_path={scratch['features']!r})"),
        "blur (majority, medium)": child(
            f"from map_segmenter.engine.steps.blur import blur_labels; blur_labels({labels!r}, {scratch['blur']!r})"),
        "knn_refine (defaults)": child(
            "from map_segmenter.engine.steps.knn_refine import refine_knn; "
            f"refine_knn({labels!r}, {features!r}, {scratch['knn']!r})"),
        "gdal_translate of the labels": ["gdal_translate", "-q", "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE",
                                         "-co", "ZLEVEL=1", labels, scratch["copy"]],
    }
    if args.predecessor:
        commands["knn_refine (predecessor)"] = child(
            "from map_segmenter.engine.steps.knn_refine import PREDECESSOR_DEFAULTS, refine_knn; "
            f"refine_knn({labels!r}, {features!r}, {scratch['old']!r}, method='predecessor', "
            "**PREDECESSOR_DEFAULTS)")
    runs = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            wall, rss, out = run_measured(command)
            cpu = json.loads(out.strip().splitlines()[-1])["cpu"] if out.strip() else None
            runs[name].append((wall, rss, cpu))
    reference = statistics.median(w for w, _, _ in runs["kmeans (+ FEATURES)"])
    print(f"{'':32s} {'seconds':>8} {'/ kmeans':>9} {'CPU s':>7} {'peak RSS MB':>12}")
    for name, results in runs.items():
        wall = statistics.median(w for w, _, _ in results)
        cpus = [c for _, _, c in results if c is not None]
        cpu = f"{statistics.median(cpus):7.1f}" if cpus else f"{'':7s}"
        print(f"{name:32s} {wall:8.2f} {wall / reference:9.2f} {cpu} {max(r for _, r, _ in results):12.0f}")
    print("targets: knn_refine (defaults) <= 12 s and <= 500 MB")

    if args.query_stage:
        stage = query_stage(labels, features, args.tree_points, args.brute_points)
        blocks = stage["blocks"]
        print(f"predecessor's query stage, {blocks} blocks x 12 neighbours in an index of {stage['index']} points:")
        for name, per_point, points in (("cKDTree, 1 worker", stage["tree1"], stage["tree_points"]),
                                        ("cKDTree, all workers", stage["tree_all"], stage["tree_points"]),
                                        ("brute force, exact", stage["brute"], stage["brute_points"]),
                                        ("brute force, BLAS", stage["blas"], stage["brute_points"])):
            print(f"  {name:22s}: {per_point * 1e6:9.1f} us/point (timed on {points} points) -> "
                  f"{per_point * blocks:8.1f} s for all blocks")
    for path in scratch.values():
        for leftover in (path, os.path.splitext(path)[0] + ".qml"):
            if os.path.exists(leftover):
                os.remove(leftover)


if __name__ == "__main__":
    main()
