"""segmenter:kmeans (or segmenter:cnn) memory and time on VRT mosaics of 25 MPix and 1 GPix, beside gdal_translate
of the same VRT.

    python bench/bench_memory.py [--sizes 25 1000] [--budgets 256 32] [--repeats 3] [--skip-translate]
                                 [--engine FOLDER] [--translate-config KEY=VALUE ...] [--method kmeans|cnn]

The mosaics are VRTs repeating the bundled Kampala orthophoto (3072 x 2048 px, 256 x 256 px JPEG tiles): no large
file is written, and every repetition is read through its own file name (a hard link in bench/out/tiles), as
in a mosaic of distinct files, so that no decoded tile is shared between repetitions. Each run is a separate
process: its wall time and peak RSS (ru_maxrss) are reported; figures are medians (RSS: the largest) of
``--repeats`` runs, with the CPU time (user + system, all threads), steadier than wall time on a shared machine.
gdal_translate copies the VRT to a compressed tiled GeoTIFF (the options the engine writes with) under its own
defaults (GDAL_CACHEMAX = 5 % of RAM), then the copy is deleted. ``--engine FOLDER`` runs the map_segmenter package
in FOLDER instead of this checkout's (e.g. ``git archive`` of an older commit extracted into FOLDER/map_segmenter),
to compare versions in the same conditions. ``--translate-config GDAL_CACHEMAX=64`` (repeatable) runs gdal_translate
with that GDAL setting, e.g. the engine's block cache cap, to see what grows with the VRT in GDAL itself.

``--method cnn`` runs ``segment_cnn`` with the shipped model (onnx_models/student_s4_v1.onnx, K = 8, defaults)
instead of ``segment_kmeans`` (K = 8, block 4).

Last, for each budget: how much larger the peak RSS is at the largest size than at the smallest, against the
target (at most 10 %), and the same for gdal_translate.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from osgeo import gdal

from common import KAMPALA, OUT, ROOT, engine_command, output_options, write_mosaic_vrt

gdal.UseExceptions()

TILES = OUT / "tiles"
GROWTH_TARGET = 0.10  # peak RSS at 1 GPix at most 10 % above 25 MPix (issue 10, item 14)


def mosaic_vrt(megapixels, source=KAMPALA):
    """A square VRT of about ``megapixels`` MPix tiling copies of ``source`` (each under its own link)."""
    side = int(round((megapixels * 1e6) ** 0.5))
    path = OUT / f"kampala_mosaic_{megapixels:g}mp.vrt"
    TILES.mkdir(parents=True, exist_ok=True)

    def link(row, col):
        name = TILES / f"kampala_{row:03d}_{col:03d}.tif"
        if not name.exists():
            os.link(source, name)  # a hard link: one more file name, no copy
        return name

    write_mosaic_vrt(path, gdal.Open(str(source)), side, link, described=True)
    return path


def measured(command, repeats):
    """Median wall time, largest peak RSS and median CPU time (user + system, all threads) of ``repeats`` runs,
    from a wait4 on the child; and the last line it printed."""
    walls, peaks, cpus, note = [], [], [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        output = process.stdout.read()
        errors = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        walls.append(time.perf_counter() - start)
        if status:
            raise RuntimeError(f"{command} failed: {errors[-2000:]}")
        peaks.append(usage.ru_maxrss / 1024)
        cpus.append(usage.ru_utime + usage.ru_stime)
        note = (output.strip().splitlines() or [""])[-1]
    return statistics.median(walls), max(peaks), statistics.median(cpus), note


MODEL = ROOT / "onnx_models" / "student_s4_v1.onnx"
CALLS = {
    "kmeans": ("from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans as run",
               "segments=8, block=4"),
    "cnn": ("from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn as run",
            f"{str(MODEL)!r}, segments=8"),
}


def engine_run_command(method, source, output, memory_mb, engine=None):
    """The command of one run of ``method`` (kmeans or cnn) on ``source``; it prints the run's first log line."""
    imported, arguments = CALLS[method]
    command = engine_command(
        f"{imported}; "
        "from map_segmenter.engine.runtime.progress import Progress; "
        "notes = []; "
        f"run({str(source)!r}, {str(output)!r}, {arguments}, memory_mb={memory_mb}, "
        "progress=Progress(log=notes.append)); print(notes[0])"
    )
    if engine:  # the package in that folder instead of this checkout's (PYTHONPATH comes before the installed one)
        command = ["env", f"PYTHONPATH={engine}", *command]
    return command


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[25, 1000], help="MPix")
    parser.add_argument("--budgets", type=float, nargs="+", default=[256, 32], help="MEMORY_MB values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-translate", action="store_true")
    parser.add_argument("--engine", help="folder holding the map_segmenter package to run (default: this checkout)")
    parser.add_argument("--translate-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a GDAL configuration option for gdal_translate (repeatable)")
    parser.add_argument("--method", choices=sorted(CALLS), default="kmeans")
    args = parser.parse_args()
    config = [argument for option in args.translate_config for argument in ("--config", *option.split("=", 1))]
    peaks = {}  # (size, budget or "translate") -> peak RSS MB
    labels, copy = OUT / "memory_labels.tif", OUT / "memory_translate.tif"
    print(f"{'MPix':>6} {'MEMORY_MB':>9} {args.method + ' s':>9} {'CPU s':>6} {'RSS MB':>7} {'translate s':>11} "
          f"{'CPU s':>6} {'RSS MB':>7} {'ratio':>6}  windows", flush=True)
    for size in args.sizes:
        source = mosaic_vrt(size)
        translate = (None, None, None)
        if not args.skip_translate:
            translate = measured(["gdal_translate", "-q", *config, *output_options(), str(source), str(copy)],
                                 args.repeats)[:3]
            peaks[size, "translate"] = translate[1]
            copy.unlink(missing_ok=True)
        for budget in args.budgets:
            wall, peak, cpu, note = measured(engine_run_command(args.method, source, labels, budget, args.engine),
                                             args.repeats)
            peaks[size, budget] = peak
            ratio = f"{wall / translate[0]:6.2f}" if translate[0] else "     -"
            shown = (f"{translate[0]:11.2f} {translate[2]:6.1f} {translate[1]:7.0f}" if translate[0]
                     else f"{'-':>11} {'-':>6} {'-':>7}")
            print(f"{size:6g} {budget:9g} {wall:9.2f} {cpu:6.1f} {peak:7.0f} {shown} {ratio}  {note}", flush=True)
            for leftover in (labels, labels.with_suffix(".qml")):
                leftover.unlink(missing_ok=True)
    small, large = min(args.sizes), max(args.sizes)
    if small != large:
        print(f"peak RSS at {large:g} MPix / at {small:g} MPix (target at most {1 + GROWTH_TARGET:.2f}):")
        for name in [*args.budgets, "translate"]:
            if (small, name) in peaks and (large, name) in peaks:
                ratio = peaks[large, name] / peaks[small, name]
                label = f"MEMORY_MB {name:g}" if name != "translate" else "gdal_translate"
                verdict = "" if name == "translate" else ("  met" if ratio <= 1 + GROWTH_TARGET else "  NOT met")
                before, after = peaks[small, name], peaks[large, name]
                print(f"  {label:>16}: {before:5.0f} -> {after:5.0f} MB = {ratio:.3f}{verdict}")


if __name__ == "__main__":
    sys.exit(main())
