"""segmenter:kmeans speed and memory on 25 and 100 MPix of real imagery, beside gdal_translate of the same file.

    python bench/bench_kmeans.py [--sizes 25 100] [--repeats 3] [--qgis]

Each figure is the median wall time of separate processes and their peak RSS. --qgis also times the full
``qgis_process run`` (QGIS start-up included). Also prints the plugin's import time inside QGIS.
"""

import argparse
import os
import sys

from common import OUT, PLUGINS, ROOT, engine_command, median_of, mosaic


def kmeans_command(source, output):
    return engine_command(
        "from map_segmenter.engine.kmeans_segmentation import segment_kmeans; "
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[25, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qgis", action="store_true", help="also time qgis_process run (includes QGIS start-up)")
    args = parser.parse_args()
    env = dict(os.environ, QGIS_PLUGINPATH=str(PLUGINS), QT_QPA_PLATFORM="offscreen",
               QGIS_CUSTOM_CONFIG_PATH=str(ROOT / ".build" / "qgis-profile"))
    print(f"{'MPix':>6} {'gdal_translate s':>17} {'kmeans s':>9} {'ratio':>6} {'translate RSS MB':>17} "
          f"{'kmeans RSS MB':>14}" + ("  qgis_process s" if args.qgis else ""))
    for size in args.sizes:
        source = mosaic(size)
        copy, labels = OUT / "translate_copy.tif", OUT / "kmeans_labels.tif"
        translate = median_of(["gdal_translate", "-q", str(source), str(copy)], args.repeats)
        kmeans = median_of(kmeans_command(source, labels), args.repeats)
        line = (f"{size:6g} {translate[0]:17.2f} {kmeans[0]:9.2f} {kmeans[0] / translate[0]:6.2f} "
                f"{translate[1]:17.0f} {kmeans[1]:14.0f}")
        if args.qgis:
            qgis = median_of(["qgis_process.bin", "run", "segmenter:kmeans", "--", f"INPUT={source}",
                              f"OUTPUT={labels}"], args.repeats, env)
            line += f"  {qgis[0]:14.2f}"
        print(line, flush=True)
        for leftover in (copy, labels):
            leftover.unlink(missing_ok=True)
    print(f"plugin import + initProcessing inside QGIS: {import_time():.3f} s (median of 5)")


if __name__ == "__main__":
    sys.exit(main())
