"""segmenter:render through processing.run in a real QGIS, including the styled load in a project."""

import numpy as np
import pytest
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)

from map_segmenter.engine.kmeans_segmentation import segment_kmeans

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
    assert result["OUTPUT"] == out and result["SEGMENTS"] == 4 and result["QUICKLOOK"] == str(tmp_path / "q.png")
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


def test_render_errors(processing_run, tmp_path, kampala_crop):
    with pytest.raises(QgsProcessingException, match="has 3 bands; a label raster has one band"):
        processing_run("segmenter:render", {"INPUT": kampala_crop, "OUTPUT": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()
