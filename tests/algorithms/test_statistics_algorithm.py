"""segmenter:statistics through processing.run in a real QGIS: the table and polygons load as QGIS layers, the
polygons styled like the label raster, geographic areas agree with QgsDistanceArea, errors are readable."""

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsDistanceArea,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputHtml,
    QgsProject,
    QgsVectorLayer,
)

from map_segmenter.algorithms.qgis_compat import GeometryType, WkbType
from map_segmenter.engine.rasters.labels import read_legend
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import SWISS, crop_real, read_array

K = 4


@pytest.fixture(scope="module")
def labels(tmp_path_factory, kampala_crop):
    path = str(tmp_path_factory.mktemp("statistics_alg") / "labels.tif")
    segment_kmeans(kampala_crop, path, segments=K)
    return path


def test_table_and_polygons_load_in_qgis_and_the_polygons_are_styled_like_the_labels(processing_run, tmp_path,
                                                                                      labels, kampala_crop):
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    polygons = str(tmp_path / "polygons.gpkg")
    context.addLayerToLoadOnCompletion(polygons, QgsProcessingContext.LayerDetails("polygons",
                                                                                   QgsProject.instance(), "POLYGONS"))
    result = processing_run("segmenter:statistics", {
        "INPUT": labels, "IMAGE": kampala_crop, "OUTPUT": str(tmp_path / "table.csv"), "POLYGONS": polygons,
        "REPORT": str(tmp_path / "report.html")}, context=context, feedback=QgsProcessingFeedback())
    assert result["SEGMENT_COUNT"] == K and result["POLYGONS"] == polygons
    assert result["REPORT"] == str(tmp_path / "report.html") and "<svg" in (tmp_path / "report.html").read_text()
    table = QgsVectorLayer(result["OUTPUT"], "table", "ogr")
    assert table.isValid() and table.wkbType() == WkbType.NoGeometry and table.featureCount() == K
    ids = read_array(labels)
    counts = np.bincount(ids.ravel(), minlength=K + 1)
    features = sorted(table.getFeatures(), key=lambda feature: feature["segment"])
    assert [feature["pixels"] for feature in features] == counts[1:].tolist()  # typed by the .csvt: integers
    assert table.fields().field("area_ha").typeName().lower() in ("real", "double")
    layer = QgsVectorLayer(polygons, "polygons", "ogr")
    assert layer.isValid() and layer.geometryType() == GeometryType.Polygon
    assert layer.crs().authid() == "EPSG:3857"
    context.layerToLoadOnCompletionDetails(polygons).postProcessor().postProcessLayer(layer, context,
                                                                                     QgsProcessingFeedback())
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "segment"
    legend = read_legend(labels)
    assert [category.value() for category in renderer.categories()] == [entry.value for entry in legend]
    assert [category.label() for category in renderer.categories()] == [entry.name for entry in legend]
    assert [category.symbol().color().getRgb()[:3] for category in renderer.categories()] == [
        entry.colour for entry in legend]


def test_the_report_is_an_html_output_and_the_table_a_table(processing_run):
    algorithm = QgsApplication.processingRegistry().algorithmById("segmenter:statistics")
    outputs = {output.name(): output for output in algorithm.outputDefinitions()}
    assert isinstance(outputs["REPORT"], QgsProcessingOutputHtml)
    assert algorithm.group() == "Post-processing"
    assert not algorithm.parameterDefinition("POLYGONS").createByDefault()
    assert not algorithm.parameterDefinition("REPORT").createByDefault()


def test_geographic_polygon_areas_agree_with_qgis_distance_area(processing_run, tmp_path):
    crop = crop_real(SWISS, tmp_path / "crop.tif", 300, 200, 100, 100)
    image = str(tmp_path / "image_4326.tif")
    gdal.Warp(image, crop, dstSRS="EPSG:4326", resampleAlg="near")
    labels = str(tmp_path / "labels.tif")
    segment_kmeans(image, labels, segments=3)
    polygons = str(tmp_path / "p.gpkg")
    result = processing_run("segmenter:statistics", {"INPUT": labels, "OUTPUT": str(tmp_path / "t.gpkg"),
                                                     "POLYGONS": polygons})
    table = {f["segment"]: f["area_m2_ellipsoidal"] for f in QgsVectorLayer(result["OUTPUT"]).getFeatures()}
    layer = QgsVectorLayer(polygons)
    distance = QgsDistanceArea()
    distance.setSourceCrs(layer.crs(), QgsProject.instance().transformContext())
    distance.setEllipsoid("EPSG:7030")  # WGS 84
    measured, stored = {}, {}
    for feature in layer.getFeatures():
        segment = feature["segment"]
        measured[segment] = measured.get(segment, 0.0) + distance.measureArea(feature.geometry())
        stored[segment] = stored.get(segment, 0.0) + feature["area_m2_ellipsoidal"]
    assert measured == pytest.approx(table, rel=0.005)
    assert stored == pytest.approx(table, rel=1e-7)


def test_errors_become_processing_exceptions_and_leave_no_file(processing_run, tmp_path, labels, kampala_crop):
    with pytest.raises(QgsProcessingException, match="has 3 bands; a label raster has one band"):
        processing_run("segmenter:statistics", {"INPUT": kampala_crop, "OUTPUT": str(tmp_path / "t.gpkg")})
    other = crop_real(kampala_crop, tmp_path / "other.tif", 50, 50)
    with pytest.raises(QgsProcessingException, match="not on the grid of the labels"):
        processing_run("segmenter:statistics", {"INPUT": labels, "IMAGE": other, "OUTPUT": str(tmp_path / "t.gpkg")})
    with pytest.raises(QgsProcessingException, match="does not exist"):
        processing_run("segmenter:statistics", {"INPUT": labels, "OUTPUT": str(tmp_path / "no" / "t.gpkg")})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.tif"]


def test_the_polygons_open_styled_however_they_are_added(processing_run, tmp_path, labels):
    """The style stored in the GeoPackage (layer_styles): a layer added from the Browser or by code is coloured and
    named like the segments, exactly as the post-processor styles it."""
    from map_segmenter.algorithms.styling import polygon_renderer

    polygons = str(tmp_path / "p.gpkg")
    processing_run("segmenter:statistics", {"INPUT": labels, "OUTPUT": str(tmp_path / "t.gpkg"),
                                            "POLYGONS": polygons})
    layer = QgsVectorLayer(polygons, "added", "ogr")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "segment"
    legend = read_legend(labels)
    expected = polygon_renderer([(entry.value, entry.colour, entry.name) for entry in legend])
    assert [(str(c.value()), c.label()) for c in renderer.categories()] == [(str(e.value), e.name) for e in legend]
    for got, want in zip(renderer.categories(), expected.categories()):
        assert got.symbol().color() == want.symbol().color()
        assert got.symbol().symbolLayer(0).strokeColor() == want.symbol().symbolLayer(0).strokeColor()
    assert layer.geometryType() == GeometryType.Polygon  # the file opens on the polygons, not the styles
    symbols = {str(c.value()): c.symbol().color().getRgb()[:3] for c in renderer.categories()}
    drawn = {feature["segment"] for feature in layer.getFeatures()}
    assert {str(value) for value in drawn} <= set(symbols)  # every polygon finds its category
