"""segment_statistics on real label rasters (projected and geographic): counts, areas and colours against numpy
and GDAL, polygons against the raster, sieving, streaming, errors and cancel."""

import csv
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal, ogr

from map_segmenter.engine.rasters.labels import read_legend
from map_segmenter.engine.runtime.errors import Cancelled, InputError, OutputError
from map_segmenter.engine.runtime.memory import CACHE_SHARE, MIN_CACHE_MB
from map_segmenter.engine.runtime.outputs import gpkg_layers
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.statistics import area_model, authalic_q, segment_statistics

from helpers import KAMPALA, SWISS, crop_real, read_array, write_raster

K = 5
WGS84_A, WGS84_F = 6378137.0, 1 / 298.257223563


@pytest.fixture(scope="module")
def labels(tmp_path_factory, kampala_crop):
    """K-Means labels of the Kampala crop (EPSG:3857) with a nodata hole, so nodata is really excluded."""
    folder = tmp_path_factory.mktemp("statistics")
    path = str(folder / "labels.tif")
    segment_kmeans(kampala_crop, path, segments=K)
    dataset = gdal.Open(path, gdal.GA_Update)
    ids = dataset.ReadAsArray()
    ids[40:140, 60:200] = 0
    dataset.GetRasterBand(1).WriteArray(ids)
    dataset = None
    return path


@pytest.fixture(scope="module")
def geographic(tmp_path_factory):
    """A small SWISSIMAGE crop warped to EPSG:4326 and segmented there: a real raster on a geographic grid."""
    folder = tmp_path_factory.mktemp("geographic")
    crop = crop_real(SWISS, folder / "crop.tif", 400, 300, 400, 250)
    image = str(folder / "image_4326.tif")
    gdal.Warp(image, crop, dstSRS="EPSG:4326", resampleAlg="near", dstAlpha=True)
    labels = str(folder / "labels_4326.tif")
    segment_kmeans(image, labels, segments=4)
    return image, labels


def table_rows(path):
    if str(path).endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    assert layer.GetGeomType() == ogr.wkbNone
    return [feature.items() for feature in layer]


def polygon_totals(path):
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    definition = layer.GetLayerDefn()
    area_field = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())
                  if definition.GetFieldDefn(i).GetName().startswith("area_")][0]
    totals, names, count = {}, {}, 0
    for feature in layer:
        totals[feature["segment"]] = totals.get(feature["segment"], 0.0) + feature[area_field]
        names[feature["segment"]] = feature["name"]
        count += 1
    return totals, names, count, area_field, layer.GetSpatialRef().ExportToWkt()


def test_counts_areas_and_colours_equal_numpy_and_gdal(tmp_path, labels, kampala_crop):
    result = segment_statistics(labels, str(tmp_path / "table.gpkg"), image_path=kampala_crop, memory_mb=1)
    ids = read_array(labels)
    image = read_array(kampala_crop).astype(np.float64)
    geotransform = gdal.Open(labels).GetGeoTransform()
    pixel_area = abs(geotransform[1] * geotransform[5])
    counts = np.bincount(ids.ravel(), minlength=K + 1)
    dataset = gdal.Open(labels)  # GDAL's own histogram leaves the nodata value out
    histogram = dataset.GetRasterBand(1).GetHistogram(-0.5, 255.5, 256, include_out_of_range=0, approx_ok=0)
    rows = table_rows(tmp_path / "table.gpkg")
    assert [row["segment"] for row in rows] == list(range(1, K + 1))
    legend = read_legend(labels)
    valid = counts[1:].sum() * pixel_area
    for row, entry in zip(rows, legend):
        k = row["segment"]
        assert row["pixels"] == counts[k] == histogram[k]
        assert row["name"] == entry.name and row["colour"] == "#{:02x}{:02x}{:02x}".format(*entry.colour)
        assert row["area_m2"] == pytest.approx(counts[k] * pixel_area, rel=1e-12)
        assert row["area_ha"] == pytest.approx(counts[k] * pixel_area / 1e4, rel=1e-12)
        assert row["area_km2"] == pytest.approx(counts[k] * pixel_area / 1e6, rel=1e-12)
        assert row["share_pct"] == pytest.approx(100 * counts[k] * pixel_area / valid, rel=1e-12)
        for band in range(3):
            values = image[band][ids == k]
            assert row[f"band{band + 1}_mean"] == pytest.approx(values.mean(), rel=1e-10)
            assert row[f"band{band + 1}_std"] == pytest.approx(values.std(), rel=1e-9)
    assert sum(row["pixels"] for row in rows) == (ids > 0).sum() < ids.size  # the hole is not counted
    assert result.segments[0].pixels == counts[1]


def test_the_result_does_not_depend_on_the_memory_budget(tmp_path, labels, kampala_crop):
    small = segment_statistics(labels, str(tmp_path / "small.csv"), image_path=kampala_crop, memory_mb=1)
    large = segment_statistics(labels, str(tmp_path / "large.csv"), image_path=kampala_crop, memory_mb=512)
    for a, b in zip(small.segments, large.segments):
        assert (a.value, a.pixels, a.area) == (b.value, b.pixels, b.area)
        np.testing.assert_allclose(a.means, b.means, rtol=1e-12)
        np.testing.assert_allclose(a.stds, b.stds, rtol=1e-9)
    rows = table_rows(tmp_path / "small.csv")
    assert (tmp_path / "small.csvt").exists()  # QGIS reads the column types from it
    assert [int(row["pixels"]) for row in rows] == [segment.pixels for segment in small.segments]


def test_polygons_have_the_raster_areas_and_match_gdal_polygonize(tmp_path, labels):
    polygons = str(tmp_path / "polygons.gpkg")
    result = segment_statistics(labels, str(tmp_path / "t.gpkg"), polygons_path=polygons)
    totals, names, count, area_field, wkt = polygon_totals(polygons)
    assert area_field == "area_m2" and count == result.polygon_count
    for segment in result.segments:
        assert totals[segment.value] == pytest.approx(segment.area, rel=0.005)  # the bound
        assert totals[segment.value] == pytest.approx(segment.area, rel=1e-9)  # in fact exact
        assert names[segment.value] == segment.name
    assert 0 not in totals
    # the same polygons as GDAL's polygonize gives by itself
    dataset = gdal.Open(labels)
    band = dataset.GetRasterBand(1)
    reference = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = reference.CreateLayer("r", dataset.GetSpatialRef(), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("segment", ogr.OFTInteger))
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [])
    assert layer.GetFeatureCount() == count
    expected = {}
    for feature in layer:
        expected[feature["segment"]] = expected.get(feature["segment"], 0.0) + feature.GetGeometryRef().GetArea()
    assert expected == pytest.approx(totals, rel=1e-9)
    assert gdal.Open(labels).GetSpatialRef().IsSame(ogr.osr.SpatialReference(wkt=wkt))


def test_polygons_are_committed_at_once_into_a_new_and_into_an_existing_geopackage(tmp_path, labels, monkeypatch):
    """Polygonize writes inside one transaction: another connection sees none of the polygons until it ends.
    Outside one, SQLite commits every polygon by itself, and a rerun into the existing GeoPackage (the layer
    replaced in a copy of it) took 12x as long as a first run (bench/bench_statistics.py)."""
    polygons = tmp_path / "polygons.gpkg"
    polygonize, seen = gdal.Polygonize, []

    def visible_rows():
        """(temporary GeoPackages found, polygons another connection sees in them)."""
        files, counts = 0, []
        # the run's temporary GeoPackages (hidden names beside the destinations), not the destinations themselves
        for name in os.listdir(tmp_path):
            path = tmp_path / name
            if not name.startswith(".") or name.endswith(("-wal", "-shm", "-journal")):
                continue
            files += 1
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
            try:
                tables = [row[0] for row in connection.execute(
                    "SELECT table_name FROM gpkg_contents WHERE data_type = 'features'")]
                counts += [connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables]
            except sqlite3.OperationalError as error:  # the writer holds its lock: nothing committed either
                assert "locked" in str(error)
                counts.append(0)
            finally:
                connection.close()
        return files, sum(counts)

    def watched(*arguments, **keywords):
        result = polygonize(*arguments, **keywords)
        seen.append((arguments[2].GetFeatureCount(), visible_rows()))
        return result

    monkeypatch.setattr(gdal, "Polygonize", watched)
    for _ in range(2):  # a new GeoPackage, then the same destination again
        result = segment_statistics(labels, str(tmp_path / "t.gpkg"), polygons_path=str(polygons))
    assert len(seen) == 2
    for written, visible in seen:
        assert written == result.polygon_count > 100
        files, rows = visible  # the table's and the polygons' GeoPackages
        assert files == 2 and rows == 0  # the first run's layer is gone from the copy, and ours is not committed yet
    assert polygon_totals(polygons)[2] == result.polygon_count


def test_sieving_merges_small_regions_and_keeps_the_coverage(tmp_path, kampala_crop):
    labels = str(tmp_path / "labels.tif")
    segment_kmeans(kampala_crop, labels, segments=K, block=2)
    plain = segment_statistics(labels, str(tmp_path / "a.gpkg"), polygons_path=str(tmp_path / "plain.gpkg"))
    sieved = segment_statistics(labels, str(tmp_path / "b.gpkg"), polygons_path=str(tmp_path / "sieved.gpkg"),
                                sieve=50)
    assert [s.pixels for s in plain.segments] == [s.pixels for s in sieved.segments]  # the table is the raster's
    assert sieved.polygon_count < plain.polygon_count / 2
    pixel_area = abs(gdal.Open(labels).GetGeoTransform()[1] * gdal.Open(labels).GetGeoTransform()[5])
    dataset = ogr.Open(str(tmp_path / "sieved.gpkg"))
    layer = dataset.GetLayer(0)
    union_area = 0.0
    for feature in layer:
        assert feature["area_m2"] >= 50 * pixel_area * (1 - 1e-9)
        assert feature.GetGeometryRef().IsValid()
        union_area += feature["area_m2"]
    assert union_area == pytest.approx(sum(s.area for s in plain.segments), rel=1e-9)  # no gaps, no overlaps
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def row_area_by_quadrature(lat_top, lat_bottom, dlon):
    """Area of a lat/lon cell on WGS84 by Gauss-Legendre quadrature of M(phi) N(phi) cos(phi): independent of
    the closed form the engine uses."""
    e2 = 2 * WGS84_F - WGS84_F**2
    nodes, weights = np.polynomial.legendre.leggauss(8)
    lo, hi = sorted((math.radians(lat_top), math.radians(lat_bottom)))
    phi = (hi - lo) / 2 * nodes + (hi + lo) / 2
    s2 = np.sin(phi) ** 2
    integrand = WGS84_A**2 * (1 - e2) * np.cos(phi) / (1 - e2 * s2) ** 2
    return float((hi - lo) / 2 * np.sum(weights * integrand)) * math.radians(dlon)


def test_geographic_areas_are_ellipsoidal(tmp_path, geographic):
    image, labels = geographic
    polygons = str(tmp_path / "polygons.gpkg")
    result = segment_statistics(labels, str(tmp_path / "table.gpkg"), image_path=image, polygons_path=polygons,
                                report_path=str(tmp_path / "r.html"), memory_mb=1)
    assert [name for name, _ in result.area_fields] == ["area_m2_ellipsoidal", "area_ha_ellipsoidal",
                                                        "area_km2_ellipsoidal"]
    assert "Geographic CRS" in result.method and "ellipsoid" in result.method
    dataset = gdal.Open(labels)
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    ids = dataset.ReadAsArray()
    row_areas = np.array([row_area_by_quadrature(y0 + r * dy, y0 + (r + 1) * dy, dx)
                          for r in range(dataset.RasterYSize)])
    rows = table_rows(tmp_path / "table.gpkg")
    alpha = read_array(image, 4)
    assert ((ids == 0) == (alpha == 0)).all() and (ids == 0).any()  # the warp's empty corners are nodata
    for row in rows:
        per_row = (ids == row["segment"]).sum(axis=1)
        assert row["pixels"] == per_row.sum()
        assert row["area_m2_ellipsoidal"] == pytest.approx(float(per_row @ row_areas), rel=1e-9)
    # at 47 deg N a degree of longitude is shorter than one of latitude by about cos(47 deg)
    equator_degree = 2 * math.pi * WGS84_A / 360
    assert row_areas[0] / abs(dx * dy * equator_degree**2) == pytest.approx(math.cos(math.radians(y0)), rel=0.01)
    totals, _, _, area_field, _ = polygon_totals(polygons)
    assert area_field == "area_m2_ellipsoidal"
    for segment in result.segments:
        assert totals[segment.value] == pytest.approx(segment.area, rel=0.005)
        assert totals[segment.value] == pytest.approx(segment.area, rel=1e-7)


def test_authalic_area_of_the_whole_ellipsoid():
    e2 = 2 * WGS84_F - WGS84_F**2
    whole = WGS84_A**2 / 2 * 2 * math.pi * (authalic_q(math.pi / 2, e2) - authalic_q(-math.pi / 2, e2))
    assert whole == pytest.approx(510065621724088.5, rel=1e-12)  # WGS84's surface area in m²
    assert authalic_q(0.3, 0.0) == pytest.approx(2 * math.sin(0.3))


def test_other_integer_rasters_with_their_own_nodata(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.choice(np.array([-5, 7, 1000, 70000, -1], np.int64), size=(90, 130)).astype(np.int32)
    path = tmp_path / "classes.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 130, 90, 1, gdal.GDT_Int32)
    dataset.SetGeoTransform((2600000.0, 2.0, 0.0, 1200000.0, 0.0, -2.0))
    dataset.SetProjection(gdal.Open(str(SWISS)).GetProjection())
    dataset.GetRasterBand(1).WriteArray(values)
    dataset.GetRasterBand(1).SetNoDataValue(-1)
    dataset = None
    polygons = str(tmp_path / "p.gpkg")
    result = segment_statistics(str(path), str(tmp_path / "t.csv"), polygons_path=polygons, memory_mb=0.01)
    assert [s.value for s in result.segments] == [-5, 7, 1000, 70000]
    assert [s.pixels for s in result.segments] == [(values == v).sum() for v in (-5, 7, 1000, 70000)]
    assert [s.name for s in result.segments] == ["Segment -5", "Segment 7", "Segment 1000", "Segment 70000"]
    assert all(s.area == s.pixels * 4.0 for s in result.segments)
    totals = polygon_totals(polygons)[0]
    assert totals == pytest.approx({s.value: s.area for s in result.segments}, rel=1e-12)
    # 16-bit signed ids go straight to their bins (offset by -32768)
    small = write_raster(tmp_path / "int16.tif", np.array([[-32768, -3, -3], [0, 5, 32767]], np.int16), nodata=0)
    result = segment_statistics(small, str(tmp_path / "int16.gpkg"))
    assert [(s.value, s.pixels) for s in result.segments] == [(-32768, 1), (-3, 2), (5, 1), (32767, 1)]
    # a raster declaring no nodata: every value counts, 0 too, with a warning
    plain = write_raster(tmp_path / "plain.tif", np.array([[0, 0, 1], [2, 2, 2]], np.uint8))
    warnings = []
    result = segment_statistics(plain, str(tmp_path / "plain.gpkg"), progress=Progress(warn=warnings.append))
    assert [(s.value, s.pixels) for s in result.segments] == [(0, 2), (1, 1), (2, 3)]
    assert "declares no nodata value" in warnings[0]


def test_polygons_of_a_file_named_with_quotes(tmp_path):
    """The layer is named after the file, and the SQL that names and measures the polygons quotes it: a name with
    a double quote (legal on Linux and macOS) or an apostrophe works."""
    labels = write_raster(tmp_path / "labels.tif", np.array([[1, 1, 2], [2, 3, 3]], np.uint8), nodata=0)
    polygons = tmp_path / 'my "best" segments\'.gpkg'
    result = segment_statistics(labels, str(tmp_path / "t.csv"), polygons_path=str(polygons))
    dataset = ogr.Open(str(polygons))
    assert dataset.GetLayer(0).GetName() == 'my "best" segments\''
    dataset = None
    totals, names, _, area_field, _ = polygon_totals(polygons)
    assert area_field == "area_m2"
    assert names == {1: "Segment 1", 2: "Segment 2", 3: "Segment 3"}
    assert totals == pytest.approx({s.value: s.area for s in result.segments}, rel=1e-12)


def test_areas_in_another_linear_unit_are_also_given_in_square_metres(tmp_path):
    dataset = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "ft.tif"), 4, 3, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((1000.0, 10.0, 0.0, 2000.0, 0.0, -10.0))
    srs = ogr.osr.SpatialReference()
    srs.ImportFromEPSG(2263)  # NAD83 / New York Long Island (ftUS)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.GetRasterBand(1).WriteArray(np.ones((3, 4), np.uint8))
    dataset.GetRasterBand(1).SetNoDataValue(0)
    model = area_model(dataset, "ft.tif")
    assert [name for name, _ in model.fields] == ["area_map_units2", "area_m2", "area_ha", "area_km2"]
    assert model.fields[1][1] == pytest.approx(0.3048006096**2, rel=1e-9)
    dataset = None
    result = segment_statistics(str(tmp_path / "ft.tif"), str(tmp_path / "t.gpkg"))
    row = table_rows(tmp_path / "t.gpkg")[0]
    assert row["area_map_units2"] == 1200.0 == result.segments[0].area
    assert row["area_m2"] == pytest.approx(1200.0 * 0.3048006096**2, rel=1e-9)


def test_report_has_a_bar_per_segment_in_its_colour_and_the_table(tmp_path, labels, kampala_crop):
    report = tmp_path / "report.html"
    result = segment_statistics(labels, str(tmp_path / "t.gpkg"), image_path=kampala_crop, report_path=str(report))
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    for segment in result.segments:
        assert f'fill="{segment.hex_colour}"' in text and segment.name in text
        assert f"{segment.pixels:,}" in text
    assert "band3_std" in text and "ha" in text


def test_errors_are_clear_and_leave_no_file(tmp_path, labels, kampala_crop):
    out = str(tmp_path / "t.gpkg")
    with pytest.raises(InputError, match="has 3 bands; a label raster has one band"):
        segment_statistics(kampala_crop, out)
    floats = write_raster(tmp_path / "float.tif", np.ones((5, 5), np.float32))
    with pytest.raises(InputError, match="Float32 values, not integer segment ids"):
        segment_statistics(floats, out)
    other_grid = crop_real(KAMPALA, tmp_path / "other.tif", 100, 100)
    with pytest.raises(InputError, match="is not on the grid of the labels"):
        segment_statistics(labels, out, image_path=other_grid)
    with pytest.raises(OutputError, match="does not exist"):
        segment_statistics(labels, str(tmp_path / "missing" / "t.gpkg"))
    with pytest.raises(OutputError, match=r"GeoPackage \(.gpkg\) or a CSV"):
        segment_statistics(labels, str(tmp_path / "t.shp"))
    with pytest.raises(OutputError, match="give a .gpkg file"):
        segment_statistics(labels, out, polygons_path=str(tmp_path / "p.csv"))
    with pytest.raises(OutputError, match="would both be the layer 't' of .*: each output needs a layer of its own"):
        segment_statistics(labels, out, polygons_path=out)
    empty = write_raster(tmp_path / "empty.tif", np.zeros((4, 4), np.uint8), nodata=0)
    with pytest.raises(InputError, match="no valid pixels"):
        segment_statistics(empty, out)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere
            with pytest.raises(OutputError, match="Cannot write"):
                segment_statistics(labels, str(locked / "t.gpkg"))
    finally:
        locked.chmod(0o700)
    assert sorted(os.listdir(tmp_path)) == ["empty.tif", "float.tif", "locked", "other.tif"]


def test_progress_moves_to_one_and_cancel_leaves_nothing(tmp_path, labels, kampala_crop):
    reports = []
    outputs = dict(polygons_path=str(tmp_path / "p.gpkg"), report_path=str(tmp_path / "r.html"))
    segment_statistics(labels, str(tmp_path / "t.gpkg"), image_path=kampala_crop, memory_mb=1, **outputs,
                       progress=Progress(report=lambda fraction, message: reports.append((fraction, message))))
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0) and len(set(fractions)) > 10
    assert {"Polygonizing", "Measuring polygons", "Writing the report"} <= {message for _, message in reports}
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    for stop_after in (2, 40, 60):
        calls = []

        def cancelled(calls=calls, stop_after=stop_after):
            calls.append(1)
            return len(calls) > stop_after

        with pytest.raises(Cancelled):
            segment_statistics(labels, str(tmp_path / "t.gpkg"), image_path=kampala_crop, memory_mb=1, **outputs,
                               progress=Progress(is_cancelled=cancelled))
        assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


KILLED_RUN = """
import time
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.steps.statistics import segment_statistics

def report(fraction, message):
    if message.startswith("Measuring polygons"):
        print("measuring", flush=True)
        time.sleep(300)

segment_statistics({labels!r}, {out!r}, polygons_path={out!r}, polygons_layer="polygons", sieve=3,
                   progress=Progress(report=report))
"""


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(tmp_path, labels):
    """A run killed while it edits its copy of the user's GeoPackage (in WAL mode: SQLite keeps -wal and -shm files
    beside the copy) leaves partial files; the next run's prepare_outputs removes them all, and the user's
    GeoPackage is untouched until a run completes."""
    folder = tmp_path / "out"
    folder.mkdir()
    mine = folder / "mine.gpkg"
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(mine))
    dataset.CreateLayer("users", None, ogr.wkbNone).CreateField(ogr.FieldDefn("note", ogr.OFTString))
    dataset = None
    connection = sqlite3.connect(mine)
    assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    connection.close()
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(labels=labels, out=str(mine))],
                           stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    try:
        assert run.stdout.readline().strip() == "measuring"
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    partial = sorted(name for name in os.listdir(folder) if ".partial" in name)
    assert any(name.endswith(".partial.gpkg-wal") for name in partial), partial  # SQLite's, beside our copy
    assert any(name.endswith(".partial.tif") for name in partial), partial  # the sieved labels
    assert all(re.search(rf"\.ms-{run.pid}-", name) for name in partial)
    assert {name: (folder / name).read_bytes() for name in before} == before

    logged = []
    result = segment_statistics(labels, str(mine), polygons_path=str(mine), polygons_layer="polygons", sieve=3,
                                progress=Progress(log=logged.append))
    assert not [name for name in os.listdir(folder) if ".partial" in name]
    assert any(f"Removed {len(partial)} leftovers of runs that were stopped" in message for message in logged)
    assert set(gpkg_layers(str(mine))) >= {"users", "mine", "polygons"} and result.polygon_count > 0


def test_memory_mb_is_checked_as_in_the_other_steps_and_caps_gdals_cache(tmp_path, labels):
    out = str(tmp_path / "t.gpkg")
    for memory in ("abc", 0, float("nan")):
        with pytest.raises(InputError) as expected:
            blur_labels(labels, str(tmp_path / "b.tif"), memory_mb=memory)
        with pytest.raises(InputError) as error:
            segment_statistics(labels, out, memory_mb=memory)
        assert str(error.value) == str(expected.value)
    with pytest.raises(InputError, match="SIEVE must be at least 0; got -1."):
        segment_statistics(labels, out, sieve=-1)
    with pytest.raises(InputError, match="SIEVE must be a whole number; got '5' \\(str\\)."):
        segment_statistics(labels, out, sieve="5")
    assert not os.listdir(tmp_path)
    own, during = gdal.GetCacheMax(), []
    watch = Progress(report=lambda *_: during.append(gdal.GetCacheMax()))
    segment_statistics(labels, out, memory_mb=64, progress=watch)
    assert set(during) == {min(own, max(MIN_CACHE_MB, 64 // CACHE_SHARE) * 2**20)} and gdal.GetCacheMax() == own
