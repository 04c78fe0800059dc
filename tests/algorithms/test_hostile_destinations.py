"""Issue 21, "Nothing lost, round 2", through processing.run: hostile destinations and paths for every algorithm and
both shipped models. Every case checks that every file of the folder that the case does not write is unchanged
(sha256; a GeoPackage's layers by content, since adding a layer rewrites the file), that the user sees no
traceback and no temporary file, and the exact message.

The folder ("scene") holds an image with the user's style, GDAL metadata and world file, a VRT of it, labels with
their features, labels whose metadata names fewer segments than they hold, the user's GeoPackage with two layers
(``roads`` and ``mine``), point and line layers, and rasters whose names hold a "|" beside a raster under the
shorter name."""

import csv
import hashlib
import os
import re
import shutil

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsDataSourceUri, QgsProcessingException, QgsProcessingFeedback

from map_segmenter.engine.rasters.labels import read_legend, write_metadata
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import ROOT, read_array, write_raster

CNN_MODEL = ROOT / "tests" / "models" / "student_s4_untrained.onnx"
MODELS = ("segmenter:segment_smooth_refine_render", "segmenter:segment_smooth_refine_render_statistics")
ROTATED = (500000.0, 0.4, 0.3, 5200000.0, 0.2, -0.5)
USER_LAYERS = ("roads", "mine")


def _vector(path, name, kind, wkts, epsg=32633):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset = ogr.Open(path, update=1) if os.path.exists(path) else ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = dataset.CreateLayer(name, srs if kind != ogr.wkbNone else None, kind)
    layer.CreateField(ogr.FieldDefn("note", ogr.OFTString))
    for wkt in wkts:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("note", f"the user's {name}")
        if wkt:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    dataset = None


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_template")
    rng = np.random.default_rng(21)
    pixels = np.repeat(np.repeat(rng.integers(0, 255, (3, 8, 8)), 4, axis=1), 4, axis=2).astype(np.uint8)
    image = write_raster(folder / "image.tif", pixels)
    (folder / "image.qml").write_text("<qgis><!-- the user's style --></qgis>\n")
    (folder / "image.tif.aux.xml").write_text(
        '<PAMDataset><Metadata><MDI key="NOTE">the user\'s metadata</MDI></Metadata></PAMDataset>\n')
    (folder / "image.tfw").write_text("0.5\n0\n0\n-0.5\n500000.25\n5199999.75\n")
    gdal.Translate(str(folder / "image.vrt"), image, format="VRT")
    segment_kmeans(image, str(folder / "labels.tif"), segments=3, block=4, features_path=str(folder / "features.tif"))
    ids = np.repeat(np.repeat(np.arange(1, 5, dtype=np.uint8).reshape(2, 2), 16, 0), 16, 1)
    write_raster(folder / "fewer.tif", ids, nodata=0)
    dataset = gdal.Open(str(folder / "fewer.tif"), gdal.GA_Update)
    write_metadata(dataset, k=2, method="test")
    dataset = None
    # "|" in file names: the shorter name is another raster, which must not be the one processed
    write_raster(folder / "a|b.tif", pixels)
    write_raster(folder / "a", pixels[:, :16, :16])
    shutil.copy(folder / "labels.tif", folder / "l|x.tif")
    write_raster(folder / "l", np.ones((8, 8), np.uint8), nodata=0)
    write_raster(folder / "rotated.tif", pixels, geotransform=ROTATED)
    _vector(str(folder / "mine.gpkg"), "roads", ogr.wkbLineString, ["LINESTRING (500001 5199999, 500010 5199990)"])
    _vector(str(folder / "mine.gpkg"), "mine", ogr.wkbNone, [None, None])
    _vector(str(folder / "points.gpkg"), "points", ogr.wkbPoint, ["POINT (500004 5199996)"])
    _vector(str(folder / "lines.gpkg"), "lines", ogr.wkbLineString, ["LINESTRING (500001 5199999, 500010 5199990)"])
    _vector(str(folder / "far.gpkg"), "far", ogr.wkbPolygon, ["POLYGON ((0 0, 1 0, 1 1, 0 0))"])
    _vector(str(folder / "tilted.gpkg"), "tilted", ogr.wkbPolygon,
            ["POLYGON ((500003 5199985, 500030 5199990, 500025 5199975, 500003 5199985))"])
    (folder / "text.gpkg").write_text("the user's notes, not a GeoPackage\n")
    return folder


@pytest.fixture
def scene(template, tmp_path):
    folder = tmp_path / "scene"
    shutil.copytree(template, folder)
    return folder


def _layers(path):
    """{layer: [(fields, geometry WKT)]} of a vector file: what a user's layer holds, whatever else changes."""
    dataset = ogr.Open(str(path))
    content = {}
    for index in range(dataset.GetLayerCount()):
        layer = dataset.GetLayer(index)
        content[layer.GetName()] = [
            (feature.items(), feature.GetGeometryRef().ExportToWkt() if feature.GetGeometryRef() else None)
            for feature in layer]
    return content


def snapshot(folder):
    files = {}
    for name in sorted(os.listdir(folder)):
        if os.path.isdir(folder / name):
            continue
        with open(folder / name, "rb") as handle:
            files[name] = hashlib.sha256(handle.read()).hexdigest()
    return files, {name: _layers(folder / name) for name in files if name == "mine.gpkg"}


def check_untouched(folder, before, written=()):
    """Every file but ``written`` unchanged, the user's GeoPackage layers unchanged, no temporary file left."""
    files, layers = snapshot(folder)
    left = [name for name in files if ".partial" in name or ".ms-" in name or name.startswith(".")]
    assert not left, left
    # QGIS itself writes GDAL statistics (.aux.xml) of a raster it loads without one: not ours to judge
    new = set(files) - set(before[0]) - set(written)
    assert all(name.endswith(".aux.xml") for name in new), new
    for name, digest in before[0].items():
        if name in written:
            continue
        if name.endswith(".aux.xml") and files.get(name) != digest:
            # QGIS (not Map Segmenter) adds the band statistics it computes for drawing an input it loads into a
            # model; the user's own items must still be there
            assert "the user's metadata" in (folder / name).read_text(), f"{name} lost the user's metadata"
            continue
        assert files.get(name) == digest, f"{name} changed"
    for name, content in before[1].items():
        for layer in USER_LAYERS:
            assert layers[name][layer] == content[layer], f"the user's layer {layer} of {name} changed"


class Messages(QgsProcessingFeedback):
    """What the user sees of a run: its errors and warnings (a model reports its steps' errors here)."""

    def __init__(self):
        super().__init__()
        self.texts = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 - QGIS API
        self.texts.append(error)

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.texts.append(warning)


def refused(processing_run, folder, algorithm, parameters, message, written=()):
    before = snapshot(folder)
    feedback = Messages()
    with pytest.raises(QgsProcessingException) as raised:
        processing_run(algorithm, parameters, feedback=feedback)
    text = "\n".join([str(raised.value), *feedback.texts])
    assert "Traceback" not in text and "mask.gpkg" not in text and "rendered_input" not in text
    assert re.search(message, text), text
    check_untouched(folder, before, written)
    return text


def deep(folder):
    """A folder whose path is about 2000 characters long (every name within the file system's 255)."""
    path = str(folder)
    while len(path) < 2000:
        path = os.path.join(path, "d" * 200)
    os.makedirs(path, exist_ok=True)
    return path


def image_parameters(folder, **extra):
    return {"INPUT": str(folder / "image.tif"), "SEGMENTS": 3, "BLOCK_SIZE": 4, **extra}


def cnn_parameters(folder, **extra):
    return {"INPUT": str(folder / "image.tif"), "MODEL_PATH": str(CNN_MODEL), "SEGMENTS": 3, "TILE_SIZE": 64, **extra}


# -- data loss: nothing an input owns, no layer a user owns -----------------------------------------------------

BELONGS = r"{what} '{path}' belongs to the input {parameter} '{source}' \({kind}\): writing it would change or " \
          r"destroy that input\. Choose a different file for {what}\."


def belongs(folder, what, written, parameter, source, kind):
    return BELONGS.format(what=what, path=re.escape(str(folder / written)), parameter=parameter,
                          source=re.escape(str(folder / source)), kind=re.escape(kind))


REFUSED = [
    # (id, algorithm, parameters(folder), message(folder))
    ("statistics-report-on-the-labels-style", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": str(f / "t.csv"), "REPORT": str(f / "labels.qml")},
     lambda f: belongs(f, "REPORT", "labels.qml", "INPUT", "labels.tif", "its QGIS style (labels.qml)")),
    ("statistics-report-on-the-labels-pam", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": str(f / "t.csv"),
                "REPORT": str(f / "labels.tif.aux.xml")},
     lambda f: belongs(f, "REPORT", "labels.tif.aux.xml", "INPUT", "labels.tif",
                       "its GDAL metadata (labels.tif.aux.xml)")),
    ("statistics-report-on-the-images-world-file", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "IMAGE": str(f / "image.tif"), "OUTPUT": str(f / "t.csv"),
                "REPORT": str(f / "image.tfw")},
     lambda f: belongs(f, "REPORT", "image.tfw", "IMAGE", "image.tif", "its world file (image.tfw)")),
    ("statistics-report-on-the-images-style", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "IMAGE": str(f / "image.tif"), "OUTPUT": str(f / "t.csv"),
                "REPORT": str(f / "image.qml")},
     lambda f: belongs(f, "REPORT", "image.qml", "IMAGE", "image.tif", "its QGIS style (image.qml)")),
    ("statistics-table-named-like-the-users-layer", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": str(f / "mine.gpkg")},
     lambda f: re.escape(f"OUTPUT: the GeoPackage '{f / 'mine.gpkg'}' already holds a layer 'mine' that Map "
                         f"Segmenter did not write: it is kept. Choose another layer name")),
    ("statistics-table-into-the-users-layer-by-ogr-uri", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": f"ogr:dbname='{f / 'mine.gpkg'}' table=\"roads\" (geom)"},
     lambda f: re.escape(f"OUTPUT: the GeoPackage '{f / 'mine.gpkg'}' already holds a layer 'roads' that Map "
                         f"Segmenter did not write: it is kept.")),
    ("statistics-polygons-into-the-users-layer-by-layername", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": str(f / "t.csv"),
                "POLYGONS": f"{f / 'mine.gpkg'}|layername=ROADS"},
     lambda f: re.escape(f"POLYGONS: the GeoPackage '{f / 'mine.gpkg'}' already holds a layer 'roads' that Map "
                         f"Segmenter did not write: it is kept.")),
    ("statistics-table-over-a-file-that-is-not-a-geopackage", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": str(f / "text.gpkg")},
     lambda f: re.escape(f"OUTPUT '{f / 'text.gpkg'}' exists and is not a GeoPackage: it would be replaced.")),
    ("statistics-table-and-polygons-one-layer", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": f"ogr:dbname='{f / 'new.gpkg'}' table=\"x\"",
                "POLYGONS": f"{f / 'new.gpkg'}|layername=x"},
     lambda f: re.escape(f"POLYGONS and OUTPUT would both be the layer 'x' of '{f / 'new.gpkg'}': each output "
                         f"needs a layer of its own.")),
    ("statistics-reserved-layer-name", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": f"ogr:dbname='{f / 'mine.gpkg'}' table=\"layer_styles\""},
     lambda f: re.escape("OUTPUT: 'layer_styles' is a name GeoPackage and QGIS keep for their own tables.")),
    ("kmeans-output-is-a-source-of-the-input-vrt", "segmenter:kmeans",
     lambda f: image_parameters(f, INPUT=str(f / "image.vrt"), OUTPUT=str(f / "image.tif")),
     lambda f: belongs(f, "OUTPUT", "image.tif", "INPUT", "image.vrt", "one of its files")),
    ("kmeans-features-is-a-source-of-the-input-vrt", "segmenter:kmeans",
     lambda f: image_parameters(f, INPUT=str(f / "image.vrt"), OUTPUT=str(f / "k.tif"),
                                FEATURES=str(f / "image.tif")),
     lambda f: belongs(f, "FEATURES", "image.tif", "INPUT", "image.vrt", "one of its files")),
    ("kmeans-output-is-the-input", "segmenter:kmeans",
     lambda f: image_parameters(f, OUTPUT=str(f / "image.tif")),
     lambda f: re.escape(f"OUTPUT '{f / 'image.tif'}' is also an input (INPUT '{f / 'image.tif'}')")),
    ("cnn-output-is-a-source-of-the-input-vrt", "segmenter:cnn",
     lambda f: cnn_parameters(f, INPUT=str(f / "image.vrt"), OUTPUT=str(f / "image.tif")),
     lambda f: belongs(f, "OUTPUT", "image.tif", "INPUT", "image.vrt", "one of its files")),
    ("blur-output-is-the-source-of-its-vrt-input", "segmenter:blur",
     lambda f: {"INPUT": str(f / "image.vrt"), "OUTPUT": str(f / "image.tif")},
     lambda f: re.escape(f"The label raster '{f / 'image.vrt'}' has 3 bands; a label raster has one band")),
    ("blur-output-is-the-input", "segmenter:blur",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": str(f / "labels.tif")},
     lambda f: re.escape(f"OUTPUT '{f / 'labels.tif'}' is also an input (INPUT '{f / 'labels.tif'}')")),
    ("knn-output-is-the-features", "segmenter:knn_refine",
     lambda f: {"LABELS": str(f / "labels.tif"), "FEATURES": str(f / "features.tif"),
                "OUTPUT": str(f / "features.tif")},
     lambda f: re.escape(f"OUTPUT '{f / 'features.tif'}' is also an input (FEATURES '{f / 'features.tif'}')")),
    ("render-composite-is-the-image", "segmenter:render",
     lambda f: {"INPUT": str(f / "labels.tif"), "IMAGE": str(f / "image.tif"), "OUTPUT": str(f / "r.tif"),
                "COMPOSITE": str(f / "image.tif")},
     lambda f: re.escape(f"COMPOSITE '{f / 'image.tif'}' is also an input (IMAGE '{f / 'image.tif'}')")),
    # paths GDAL cannot take: refused before any work, their length named
    ("kmeans-output-path-too-long", "segmenter:kmeans",
     lambda f: image_parameters(f, OUTPUT=os.path.join(deep(f), "x" * 100 + ".tif")),
     lambda f: rf"OUTPUT's path is {len(os.path.join(deep(f), 'x' * 100 + '.tif'))} characters long \('.*'\); GDAL "
               rf"takes paths of at most \d+ characters\. Move the file to a folder with a shorter "
               rf"path, or give it a shorter name\."),
    ("statistics-table-path-too-long", "segmenter:statistics",
     lambda f: {"INPUT": str(f / "labels.tif"), "OUTPUT": os.path.join(deep(f), "x" * 100 + ".gpkg")},
     lambda f: r"OUTPUT's path is \d+ characters long"),
    # MASK: polygons only, named as the user knows it
    ("kmeans-mask-of-points", "segmenter:kmeans",
     lambda f: image_parameters(f, MASK=str(f / "points.gpkg"), OUTPUT=str(f / "k.tif")),
     lambda f: re.escape(f"The MASK 'points' ({f / 'points.gpkg'}) holds Point geometries; a mask must be "
                         f"polygons (only pixels inside them are segmented). Choose a polygon layer.")),
    ("cnn-mask-of-lines", "segmenter:cnn",
     lambda f: cnn_parameters(f, MASK=str(f / "lines.gpkg"), OUTPUT=str(f / "c.tif")),
     lambda f: re.escape(f"The MASK 'lines' ({f / 'lines.gpkg'}) holds LineString geometries; a mask must be "
                         f"polygons")),
    ("kmeans-mask-elsewhere-names-the-users-layer", "segmenter:kmeans",
     lambda f: image_parameters(f, MASK=str(f / "far.gpkg"), OUTPUT=str(f / "k.tif")),
     lambda f: re.escape(f"The MASK 'far' ({f / 'far.gpkg'}) (") + r".* does not overlap the raster"),
    ("model-statistics-into-the-users-layer", MODELS[1],
     lambda f: {"INPUT": str(f / "image.tif"), "SEGMENTS": 3, "BLOCK_SIZE": 4, "render:Segments": str(f / "s.tif"),
                "statistics:Statistics": str(f / "mine.gpkg")},
     lambda f: re.escape(f"OUTPUT: the GeoPackage '{f / 'mine.gpkg'}' already holds a layer 'mine' that Map "
                         f"Segmenter did not write: it is kept.")),
    ("model-report-on-the-images-style", MODELS[1],
     lambda f: {"INPUT": str(f / "image.tif"), "SEGMENTS": 3, "BLOCK_SIZE": 4, "render:Segments": str(f / "s.tif"),
                "statistics:Statistics": str(f / "t.csv"), "statistics:Report": str(f / "s.qml")},
     lambda f: belongs(f, "REPORT", "s.qml", "INPUT", "s.tif", "its QGIS style (s.qml)")),
]


@pytest.mark.parametrize("algorithm, parameters, message", [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_a_hostile_destination_is_refused_and_nothing_is_lost(processing_run, scene, algorithm, parameters, message):
    # a model's steps before the one refused have written their own outputs (Modeler runs them in turn)
    refused(processing_run, scene, algorithm, parameters(scene), message(scene),
            written={"s.tif", "s.qml"} if algorithm in MODELS else ())


# -- GeoPackages: a layer of our own beside the user's ----------------------------------------------------------


def destination(text, folder):
    """``text`` with {f} the folder; "ogr-uri:NAME": the layer NAME of mine.gpkg as QGIS's Save to GeoPackage
    writes it (QgsDataSourceUri: its own escaping of quotes)."""
    if text.startswith("ogr-uri:"):
        uri = QgsDataSourceUri()
        uri.setDatabase(str(folder / "mine.gpkg"))
        uri.setTable(text[len("ogr-uri:"):])
        return f"ogr:{uri.uri()}"
    return text.format(f=folder)


@pytest.mark.parametrize("output, polygons, layers", [
    ("ogr:dbname='{f}/mine.gpkg' table=\"stats\" (geom)", None, ["stats"]),
    ("{f}/t.csv", "{f}/mine.gpkg|layername=polys", ["polys"]),
    ("ogr-uri:we\"ird's", "ogr-uri:po\"ly's", ['we"ird\'s', 'po"ly\'s']),
], ids=["ogr-uri-table", "layername-polygons", "quoted-names-both"])
def test_statistics_adds_a_layer_beside_the_users_layers(processing_run, scene, output, polygons, layers):
    before = snapshot(scene)
    parameters = {"INPUT": str(scene / "labels.tif"), "OUTPUT": destination(output, scene)}
    if polygons:
        parameters["POLYGONS"] = destination(polygons, scene)
    for _ in range(2):  # a second run replaces the layers the first wrote, and only them
        result = processing_run("segmenter:statistics", parameters)
    assert result["SEGMENT_COUNT"] == 3
    check_untouched(scene, before, written={"mine.gpkg", "t.csv", "t.csvt"})
    content = _layers(scene / "mine.gpkg")
    for layer in layers:
        assert len(content[layer]) >= 3
        assert f"|layername={layer}" in (result.get("POLYGONS") or "") + result["OUTPUT"]
    assert sorted(content) == sorted([*USER_LAYERS, *layers, *(["layer_styles"] if polygons else [])])


def test_the_statistics_model_adds_its_table_to_the_users_geopackage(processing_run, scene):
    before = snapshot(scene)
    processing_run(MODELS[1], {"INPUT": str(scene / "image.tif"), "SEGMENTS": 3, "BLOCK_SIZE": 4,
                               "render:Segments": str(scene / "s.tif"),
                               "statistics:Statistics": f"ogr:dbname='{scene / 'mine.gpkg'}' table=\"measured\""})
    check_untouched(scene, before, written={"mine.gpkg", "s.tif", "s.qml"})
    assert len(_layers(scene / "mine.gpkg")["measured"]) >= 2


# -- "|" in file names: the file itself is processed, never the raster under the name before the "|" ----------


def _csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _run_ok(processing_run, folder, algorithm, parameters, written):
    before = snapshot(folder)
    result = processing_run(algorithm, parameters)
    check_untouched(folder, before, written)
    return result


PIPES = [
    ("kmeans", "segmenter:kmeans", lambda f: image_parameters(f, INPUT=str(f / "a|b.tif"), OUTPUT=str(f / "o.tif"))),
    ("cnn", "segmenter:cnn", lambda f: cnn_parameters(f, INPUT=str(f / "a|b.tif"), OUTPUT=str(f / "o.tif"))),
    ("blur", "segmenter:blur", lambda f: {"INPUT": str(f / "l|x.tif"), "OUTPUT": str(f / "o.tif")}),
    ("render", "segmenter:render", lambda f: {"INPUT": str(f / "l|x.tif"), "OUTPUT": str(f / "o.tif")}),
    ("knn_refine", "segmenter:knn_refine",
     lambda f: {"LABELS": str(f / "l|x.tif"), "FEATURES": str(f / "features.tif"), "OUTPUT": str(f / "o.tif")}),
    ("model", MODELS[0], lambda f: {"INPUT": str(f / "a|b.tif"), "SEGMENTS": 3, "BLOCK_SIZE": 4,
                                    "render:Segments": str(f / "o.tif")}),
]


@pytest.mark.parametrize("algorithm, parameters", [case[1:] for case in PIPES], ids=[case[0] for case in PIPES])
def test_a_file_name_with_a_bar_is_the_file_processed(processing_run, scene, algorithm, parameters):
    _run_ok(processing_run, scene, algorithm, parameters(scene), {"o.tif", "o.qml"})
    assert read_array(scene / "o.tif").shape == (32, 32)  # "a" and "l", the names before the "|", are smaller


def test_statistics_of_a_file_name_with_a_bar(processing_run, scene):
    _run_ok(processing_run, scene, "segmenter:statistics",
            {"INPUT": str(scene / "l|x.tif"), "OUTPUT": str(scene / "t.csv")}, {"t.csv", "t.csvt"})
    assert sum(int(row["pixels"]) for row in _csv(scene / "t.csv")) == 32 * 32


# -- grids: MASK on a rotated grid is burnt exactly where GDAL's rasterizer burns it -------------------------


@pytest.mark.parametrize("algorithm", ["segmenter:kmeans", "segmenter:cnn"])
def test_a_mask_on_a_rotated_grid_is_gdals_rasterization(processing_run, scene, algorithm):
    parameters = (image_parameters if algorithm.endswith("kmeans") else cnn_parameters)(
        scene, INPUT=str(scene / "rotated.tif"), MASK=str(scene / "tilted.gpkg"), OUTPUT=str(scene / "o.tif"))
    _run_ok(processing_run, scene, algorithm, parameters, {"o.tif", "o.qml"})
    source = gdal.Open(str(scene / "rotated.tif"))
    expected = gdal.GetDriverByName("MEM").Create("", source.RasterXSize, source.RasterYSize, 1, gdal.GDT_Byte)
    expected.SetGeoTransform(source.GetGeoTransform())
    expected.SetProjection(source.GetProjection())
    gdal.Rasterize(expected, str(scene / "tilted.gpkg"), burnValues=[1])
    inside = expected.ReadAsArray() > 0
    assert inside.any() and not inside.all()
    assert np.array_equal(read_array(scene / "o.tif") > 0, inside)


# -- a legend covers every id ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["segmenter:render", "segmenter:blur"])
def test_the_legend_covers_every_id_the_labels_hold(processing_run, scene, algorithm):
    _run_ok(processing_run, scene, algorithm, {"INPUT": str(scene / "fewer.tif"), "OUTPUT": str(scene / "o.tif")},
            {"o.tif", "o.qml"})
    assert [entry.value for entry in read_legend(scene / "o.tif")] == [1, 2, 3, 4]
    assert (scene / "o.qml").read_text().count('label="Segment') == 4


def test_statistics_rows_cover_every_id(processing_run, scene):
    _run_ok(processing_run, scene, "segmenter:statistics",
            {"INPUT": str(scene / "fewer.tif"), "OUTPUT": str(scene / "t.csv")}, {"t.csv", "t.csvt"})
    assert [row["segment"] for row in _csv(scene / "t.csv")] == ["1", "2", "3", "4"]
