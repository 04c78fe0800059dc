"""segmenter:statistics from the shell: ``qgis_process`` writes the same table, polygons and report as the engine."""

import csv
import json

from osgeo import ogr

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.statistics import segment_statistics

from helpers import qgis_process


def test_qgis_process_writes_the_engines_table_polygons_and_report(tmp_path, kampala_crop):
    labels = str(tmp_path / "labels.tif")
    segment_kmeans(kampala_crop, labels, segments=4)
    table, polygons, report = tmp_path / "table.csv", tmp_path / "polygons.gpkg", tmp_path / "report.html"
    completed = qgis_process("run", "segmenter:statistics", "--json", "--", f"INPUT={labels}",
                             f"IMAGE={kampala_crop}", f"OUTPUT={table}", f"POLYGONS={polygons}", f"REPORT={report}",
                             "SIEVE=4")
    results = json.loads(completed.stdout)["results"]
    assert results["OUTPUT"] == str(table) and results["POLYGONS"] == str(polygons)
    assert results["REPORT"] == str(report) and results["SEGMENT_COUNT"] == 4
    engine = segment_statistics(labels, str(tmp_path / "engine.csv"), image_path=kampala_crop,
                                polygons_path=str(tmp_path / "engine.gpkg"), sieve=4)
    with open(table, newline="", encoding="utf-8") as cli_handle, \
            open(tmp_path / "engine.csv", newline="", encoding="utf-8") as engine_handle:
        assert list(csv.DictReader(cli_handle)) == list(csv.DictReader(engine_handle))
    assert (tmp_path / "table.csvt").read_text() == (tmp_path / "engine.csvt").read_text()
    assert ogr.Open(str(polygons)).GetLayer(0).GetFeatureCount() == engine.polygon_count
    assert "<svg" in report.read_text(encoding="utf-8")


def test_help_and_a_bad_input(tmp_path, kampala_crop):
    text = qgis_process("help", "segmenter:statistics").stdout
    for name in ("INPUT", "IMAGE", "SIEVE", "MEMORY_MB", "OUTPUT", "POLYGONS", "REPORT"):
        assert f"{name}:" in text
    completed = qgis_process("run", "segmenter:statistics", "--", f"INPUT={kampala_crop}",
                             f"OUTPUT={tmp_path / 't.gpkg'}", check=False)
    assert completed.returncode != 0 and "a label raster has one band" in completed.stdout + completed.stderr
    assert not (tmp_path / "t.gpkg").exists()
