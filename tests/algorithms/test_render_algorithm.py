"""segmenter:render through processing.run in a real QGIS, including the styled load in a project."""

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)

from map_segmenter.engine.rasters.labels import read_metadata
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import read_array


def test_render_runs_and_the_loaded_layer_is_styled(processing_run, tmp_path, kampala_crop):
    labels = str(tmp_path / "labels.tif")
    segment_kmeans(kampala_crop, labels, segments=4)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    out = str(tmp_path / "styled.tif")
    context.addLayerToLoadOnCompletion(out, QgsProcessingContext.LayerDetails("styled", QgsProject.instance(),
                                                                              "OUTPUT"))
    result = processing_run("segmenter:render", {
        "INPUT": labels, "PALETTE": 1, "IMAGE": kampala_crop, "NAMES": "dark, medium, light, bright",
        "OUTPUT": out, "QUICKLOOK": str(tmp_path / "q.png")}, context=context, feedback=QgsProcessingFeedback())
    assert result["OUTPUT"] == out and result["SEGMENT_COUNT"] == 4 and result["QUICKLOOK"] == str(tmp_path / "q.png")
    assert np.array_equal(read_array(out), read_array(labels))
    # what the GUI does on completion: load the layer (here without its .qml) and run the post-processor
    options = QgsRasterLayer.LayerOptions()
    options.loadDefaultStyle = False
    layer = QgsRasterLayer(out, "styled", "gdal", options)
    assert [c.label for c in layer.renderer().classes()] != ["dark", "medium", "light", "bright"]
    context.layerToLoadOnCompletionDetails(out).postProcessor().postProcessLayer(layer, context,
                                                                                QgsProcessingFeedback())
    assert layer.renderer().type() == "paletted"
    assert [c.label for c in layer.renderer().classes()] == ["dark", "medium", "light", "bright"]
    # the mean-colour palette: each segment's mean image colour, in the colour table and the quicklook (full size)
    ids, image = read_array(labels), read_array(kampala_crop).astype(np.float64)
    means = [tuple(int(round(image[b][ids == k].mean())) for b in range(3)) for k in range(1, 5)]
    dataset = gdal.Open(out)
    table = dataset.GetRasterBand(1).GetRasterColorTable()
    assert [table.GetColorEntry(k)[:3] for k in range(1, 5)] == means
    quicklook = read_array(tmp_path / "q.png")
    lookup = np.array([(0, 0, 0), *means], np.uint8)
    assert np.array_equal(np.moveaxis(quicklook[:3], 0, -1), lookup[ids]) and (quicklook[3] == 255).all()


def test_names_may_hold_commas_and_segments_is_a_declared_output(processing_run, tmp_path, kampala_crop):
    algorithm = QgsApplication.processingRegistry().algorithmById("segmenter:render")
    assert "SEGMENT_COUNT" in [output.name() for output in algorithm.outputDefinitions()]
    labels = str(tmp_path / "labels.tif")
    segment_kmeans(kampala_crop, labels, segments=3)
    out = str(tmp_path / "styled.tif")
    result = processing_run("segmenter:render", {"INPUT": labels, "NAMES": "Roofs, flat; Roads ;Trees, shrubs",
                                                 "OUTPUT": out})
    assert result["SEGMENT_COUNT"] == 3
    assert read_metadata(gdal.Open(out))["names"] == ["Roofs, flat", "Roads", "Trees, shrubs"]


def test_render_errors(processing_run, tmp_path, kampala_crop):
    with pytest.raises(QgsProcessingException, match="has 3 bands; a label raster has one band"):
        processing_run("segmenter:render", {"INPUT": kampala_crop, "OUTPUT": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()
