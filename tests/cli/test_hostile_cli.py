"""Issue 21 through ``qgis_process``: the user's GeoPackage layers, inputs' sidecars, a "|" in a file name and a MASK of
points, as a shell user meets them (no traceback, exact message, nothing changed)."""

import hashlib
import os
import shutil

import numpy as np
import pytest
from osgeo import ogr, osr

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import qgis_process, read_array, write_raster


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(21)
    pixels = np.repeat(np.repeat(rng.integers(0, 255, (3, 8, 8)), 4, axis=1), 4, axis=2).astype(np.uint8)
    image = write_raster(tmp_path / "image.tif", pixels)
    segment_kmeans(image, str(tmp_path / "labels.tif"), segments=3, block=4)
    write_raster(tmp_path / "a|b.tif", pixels)
    write_raster(tmp_path / "a", pixels[:, :16, :16])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "mine.gpkg"))
    layer = dataset.CreateLayer("mine", srs, ogr.wkbPoint)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POINT (500004 5199996)"))
    layer.CreateFeature(feature)
    dataset = layer = feature = None
    shutil.copy(tmp_path / "mine.gpkg", tmp_path / "points.gpkg")
    return tmp_path


def digests(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in os.listdir(folder)
            if (folder / name).is_file()}


CASES = [
    ("statistics-table-named-like-the-users-layer", "segmenter:statistics",
     lambda f: [f"INPUT={f / 'labels.tif'}", f"OUTPUT={f / 'mine.gpkg'}"],
     lambda f: f"OUTPUT: the GeoPackage '{f / 'mine.gpkg'}' already holds a layer 'mine' that Map Segmenter did not "
               f"write: it is kept."),
    ("statistics-report-on-the-labels-style", "segmenter:statistics",
     lambda f: [f"INPUT={f / 'labels.tif'}", f"OUTPUT={f / 't.csv'}", f"REPORT={f / 'labels.qml'}"],
     lambda f: f"REPORT '{f / 'labels.qml'}' belongs to the input INPUT '{f / 'labels.tif'}' (its QGIS style "
               f"(labels.qml)): writing it would change or destroy that input. Choose a different file for REPORT."),
    ("kmeans-mask-of-points", "segmenter:kmeans",
     lambda f: [f"INPUT={f / 'image.tif'}", "SEGMENTS=3", f"MASK={f / 'points.gpkg'}", f"OUTPUT={f / 'k.tif'}"],
     lambda f: f"The MASK 'points' ({f / 'points.gpkg'}) holds Point geometries; a mask must be polygons"),
    ("blur-output-is-the-input", "segmenter:blur",
     lambda f: [f"INPUT={f / 'labels.tif'}", f"OUTPUT={f / 'labels.tif'}"],
     lambda f: f"OUTPUT '{f / 'labels.tif'}' is also an input (INPUT '{f / 'labels.tif'}')"),
]


@pytest.mark.parametrize("algorithm, arguments, message", [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_qgis_process_refuses_and_changes_nothing(scene, algorithm, arguments, message):
    before = digests(scene)
    completed = qgis_process("run", algorithm, "--", *arguments(scene), check=False)
    seen = completed.stdout + completed.stderr
    assert completed.returncode != 0 and message(scene) in seen, seen
    assert "Traceback" not in seen
    after = digests(scene)
    assert {name: after.get(name) for name in before} == before
    assert set(after) - set(before) <= {"image.tif.aux.xml", "labels.tif.aux.xml"}  # QGIS's own statistics


def test_qgis_process_adds_a_layer_to_the_users_geopackage(scene):
    target = f"ogr:dbname='{scene / 'mine.gpkg'}' table=\"stats\""
    completed = qgis_process("run", "segmenter:statistics", "--", f"INPUT={scene / 'labels.tif'}",
                             f"OUTPUT={target}", f"POLYGONS={scene / 'mine.gpkg'}|layername=polys")
    assert "Traceback" not in completed.stdout + completed.stderr
    dataset = ogr.Open(str(scene / "mine.gpkg"))
    names = sorted(dataset.GetLayer(index).GetName() for index in range(dataset.GetLayerCount()))
    assert names == ["layer_styles", "mine", "polys", "stats"]
    assert dataset.GetLayerByName("mine").GetFeatureCount() == 1
    assert dataset.GetLayerByName("stats").GetFeatureCount() == 3


@pytest.mark.parametrize("algorithm, extra", [("segmenter:kmeans", ["SEGMENTS=3", "BLOCK_SIZE=4"]),
                                              ("segmenter:segment_smooth_refine_render", ["SEGMENTS=3"])])
def test_qgis_process_segments_the_file_whose_name_holds_a_bar(scene, algorithm, extra):
    output = "render:Segments" if "render" in algorithm else "OUTPUT"
    completed = qgis_process("run", algorithm, "--", f"INPUT={scene / 'a|b.tif'}", *extra,
                             f"{output}={scene / 'o.tif'}")
    assert "Traceback" not in completed.stdout + completed.stderr
    assert read_array(scene / "o.tif").shape == (32, 32)  # not "a", 16 x 16
