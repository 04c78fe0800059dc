"""segmenter:statistics on a 100 MPix label raster beside gdal_polygonize.py and QGIS's
native:rasterlayeruniquevaluesreport on the same raster, in one run.

    python bench/bench_statistics.py [--mpix 100] [--repeats 3] [--labels LABELS.tif]

The label raster is the one bench_blur.py makes (segment_kmeans, K = 8, block 4, of the Kampala mosaic; cached in
bench/out/); --labels takes any label raster instead. Each figure is the median wall time of separate processes
(rounds interleave the commands, so load drifts hit all alike) and the largest peak RSS. Measured:
- statistics table: the engine call segmenter:statistics makes, table only (one counting pass);
- statistics all: table + polygons (GeoPackage) + HTML report, the engine call, into new files;
- statistics all, rerun: the same again into the files it wrote, as a user's rerun does (its layers replaced in the
  existing GeoPackages: a copy of each is written, the old layer dropped from it);
- statistics table / all (qgis_process): the same through qgis_process.bin, QGIS start-up included (the fair
  comparison with the QGIS algorithm below, which also runs in qgis_process);
- gdal_polygonize.py: GDAL's own polygonize script to a GeoPackage (what the polygons cost at the least);
- native:rasterlayeruniquevaluesreport (qgis_process): QGIS's count of pixels per value, HTML + table.
"""

import os
import shutil
import sys

from bench_blur import label_bench_arguments

from common import OUT, engine_command, interleaved


def statistics_command(source, table, polygons=None, report=None):
    extra = f", polygons_path={str(polygons)!r}, report_path={str(report)!r}" if polygons else ""
    return engine_command("from map_segmenter.engine.steps.statistics import segment_statistics; "
                          f"segment_statistics({str(source)!r}, {str(table)!r}{extra})")


def polygonize_command(source, output):
    script = shutil.which("gdal_polygonize.py")
    prefix = [script] if script else [sys.executable, "-m", "osgeo_utils.gdal_polygonize"]
    return [*prefix, "-q", str(source), "-f", "GPKG", str(output), "polygons", "segment"]


def polygon_count(path):
    from osgeo import ogr

    dataset = ogr.Open(str(path))
    return dataset.GetLayer(0).GetFeatureCount() if dataset else 0


def main():
    args, source = label_bench_arguments(__doc__)
    files = {name: OUT / name for name in ("st_table.gpkg", "st_all.gpkg", "st_polygons.gpkg", "st_report.html",
                                           "st_q_table.gpkg", "st_q_polygons.gpkg", "st_q_report.html",
                                           "gdal_polygons.gpkg", "unique.html", "unique.gpkg")}
    qgis = ["qgis_process.bin", "run"]
    commands = {
        "statistics table": statistics_command(source, files["st_table.gpkg"]),
        "statistics all": statistics_command(source, files["st_all.gpkg"], files["st_polygons.gpkg"],
                                             files["st_report.html"]),
        "statistics all, rerun": statistics_command(source, files["st_all.gpkg"], files["st_polygons.gpkg"],
                                                    files["st_report.html"]),
        "statistics table (qgis_process)": [
            *qgis, "segmenter:statistics", "--", f"INPUT={source}", f"OUTPUT={files['st_q_table.gpkg']}"],
        "statistics all (qgis_process)": [
            *qgis, "segmenter:statistics", "--", f"INPUT={source}", f"OUTPUT={files['st_q_table.gpkg']}",
            f"POLYGONS={files['st_q_polygons.gpkg']}", f"REPORT={files['st_q_report.html']}"],
        "gdal_polygonize.py": polygonize_command(source, files["gdal_polygons.gpkg"]),
        "native:rasterlayeruniquevaluesreport": [
            *qgis, "native:rasterlayeruniquevaluesreport", "--", f"INPUT={source}", "BAND=1",
            f"OUTPUT_HTML_FILE={files['unique.html']}", f"OUTPUT_TABLE={files['unique.gpkg']}"],
    }
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")

    def before(name):
        if name == "gdal_polygonize.py":
            files["gdal_polygons.gpkg"].unlink(missing_ok=True)  # it would append to an existing file
        if name == "statistics all":  # into new files; the rerun after it replaces its layers in them
            for path in (files["st_all.gpkg"], files["st_polygons.gpkg"], files["st_report.html"]):
                path.unlink(missing_ok=True)

    seconds, peak = interleaved(commands, args.repeats, env, before)
    print(f"label raster: {source} (median of {args.repeats} runs each)")
    print(f"polygons: segmenter:statistics {polygon_count(files['st_polygons.gpkg']):,}, "
          f"gdal_polygonize.py {polygon_count(files['gdal_polygons.gpkg']):,}")
    print(f"{'':40s} {'seconds':>8} {'peak RSS MB':>12}")
    for name in commands:
        print(f"{name:40s} {seconds[name]:8.2f} {peak[name]:12.0f}")
    print(f"statistics all / gdal_polygonize.py: {seconds['statistics all'] / seconds['gdal_polygonize.py']:.2f}")
    unique = seconds["native:rasterlayeruniquevaluesreport"]
    print("statistics table (qgis_process) / native:rasterlayeruniquevaluesreport: "
          f"{seconds['statistics table (qgis_process)'] / unique:.2f} (both include qgis_process start-up)")
    print("statistics all (qgis_process) / native:rasterlayeruniquevaluesreport: "
          f"{seconds['statistics all (qgis_process)'] / unique:.2f}")
    for path in files.values():
        path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
