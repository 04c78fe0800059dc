"""segmenter:kmeans speed and memory on 25 and 100 MPix of real imagery, beside gdal_translate of the same file.

    python bench/bench_kmeans.py [--sizes 25 100] [--repeats 3] [--qgis]
    python bench/bench_kmeans.py --on 3.22 3.44 [--sizes 25] [--repeats 3]

Each figure is the median wall time of separate processes and their peak RSS. --qgis also times the full
``qgis_process run`` (QGIS start-up included). Also prints the plugin's import time inside QGIS.
--on runs the same bench on each Debian QGIS (scripts/on_qgis.sh: 3.22 here, 3.40 and 3.44 in their Debian
roots, one after the other) and prints the figures side by side, so that newer GDAL or numpy shows.
"""

import argparse
import json
import os
import subprocess
import sys

from common import OUT, PLUGINS, ROOT, engine_command, median_of, mosaic


def kmeans_command(source, output):
    return engine_command(
        "from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans; "
        f"segment_kmeans({str(source)!r}, {str(output)!r}, segments=8, block=4)"
    )


def import_time():
    code = (
        "import time; from qgis.core import QgsApplication; app = QgsApplication([], False); app.initQgis(); "
        "t = time.perf_counter(); import map_segmenter; plugin = map_segmenter.classFactory(None); "
        "plugin.initProcessing(); print(time.perf_counter() - t)"
    )
    import subprocess

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    runs = []
    for _ in range(5):
        out = subprocess.run(engine_command(code), capture_output=True, text=True, env=env, check=True).stdout
        runs.append(float(out.strip().splitlines()[-1]))
    return sorted(runs)[2]


def figures(size, repeats):
    """{name: value} of one size: median seconds and peak RSS MB of gdal_translate and of kmeans."""
    source = mosaic(size)  # made by a child process (common.in_child): the peaks below are the commands' own
    copy, labels = OUT / "translate_copy.tif", OUT / "kmeans_labels.tif"
    translate = median_of(["gdal_translate", "-q", str(source), str(copy)], repeats)
    kmeans = median_of(kmeans_command(source, labels), repeats)
    for leftover in (copy, labels):
        leftover.unlink(missing_ok=True)
    return {"gdal_translate s": translate[0], "kmeans s": kmeans[0], "kmeans / translate": kmeans[0] / translate[0],
            "gdal_translate RSS MB": translate[1], "kmeans RSS MB": kmeans[1]}


def versions():
    from osgeo import gdal

    qgis = subprocess.run([sys.executable, "-c", "from qgis.core import Qgis; print(Qgis.version())"],
                          capture_output=True, text=True).stdout.strip().split("-")[0]
    return {"QGIS": qgis, "GDAL": gdal.__version__, "numpy": __import__("numpy").__version__,
            "Python": sys.version.split()[0]}


def side_by_side(args):
    """Run ``--json`` under each QGIS of ``args.on``, one after the other, and print one column per QGIS."""
    columns = {}
    for version in args.on:
        command = ["bash", str(ROOT / "scripts" / "on_qgis.sh"), version, "python", "bench/bench_kmeans.py",
                   "--json", "--repeats", str(args.repeats), "--sizes", *map(str, args.sizes)]
        print(f"running on QGIS {version}...", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"QGIS {version}: {done.stderr[-2000:]}")
        columns[version] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [(name, [columns[v]["versions"][name] for v in args.on]) for name in ("QGIS", "GDAL", "numpy", "Python")]
    for size in args.sizes:
        for name in columns[args.on[0]]["sizes"][str(size)]:
            rows.append((f"{size:g} MPix {name}", [columns[v]["sizes"][str(size)][name] for v in args.on]))
    print(f"{'':32}" + "".join(f"{'QGIS ' + v:>14}" for v in args.on) +
          (f"{args.on[-1] + ' / ' + args.on[0]:>14}" if len(args.on) > 1 else ""))
    for name, values in rows:
        cells = "".join(f"{value:>14}" if isinstance(value, str) else f"{value:14.2f}" for value in values)
        ratio = (f"{values[-1] / values[0]:14.2f}" if len(values) > 1 and not isinstance(values[0], str)
                 and "/" not in name else "")
        print(f"{name:32}{cells}{ratio}")
    print(f"(median of {args.repeats} runs each; load average at the end: {os.getloadavg()[0]:.2f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[25, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qgis", action="store_true", help="also time qgis_process run (includes QGIS start-up)")
    parser.add_argument("--on", nargs="+", choices=["3.22", "3.40", "3.44"],
                        help="run under each of these Debian QGIS and print the figures side by side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one line, for --on
    args = parser.parse_args()
    if args.on:
        return side_by_side(args)
    if args.json:
        print(json.dumps({"versions": versions(),
                          "sizes": {str(size): figures(size, args.repeats) for size in args.sizes}}))
        return 0
    env = dict(os.environ, QGIS_PLUGINPATH=str(PLUGINS), QT_QPA_PLATFORM="offscreen",
               QGIS_CUSTOM_CONFIG_PATH=str(ROOT / ".build" / "qgis-profile"))
    print(f"{'MPix':>6} {'gdal_translate s':>17} {'kmeans s':>9} {'ratio':>6} {'translate RSS MB':>17} "
          f"{'kmeans RSS MB':>14}" + ("  qgis_process s" if args.qgis else ""))
    for size in args.sizes:
        figure = figures(size, args.repeats)
        line = (f"{size:6g} {figure['gdal_translate s']:17.2f} {figure['kmeans s']:9.2f} "
                f"{figure['kmeans / translate']:6.2f} {figure['gdal_translate RSS MB']:17.0f} "
                f"{figure['kmeans RSS MB']:14.0f}")
        if args.qgis:
            labels = OUT / "kmeans_labels.tif"
            qgis = median_of(["qgis_process.bin", "run", "segmenter:kmeans", "--", f"INPUT={mosaic(size)}",
                              f"OUTPUT={labels}"], args.repeats, env)
            labels.unlink(missing_ok=True)
            line += f"  {qgis[0]:14.2f}"
        print(line, flush=True)
    print(f"plugin import + initProcessing inside QGIS: {import_time():.3f} s (median of 5)")


if __name__ == "__main__":
    sys.exit(main())
