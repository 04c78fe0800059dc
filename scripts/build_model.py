"""Regenerate processing_provider/models/segment_smooth_refine_render.model3 (kmeans -> blur -> knn_refine -> render).

    source scripts/env.sh && python scripts/build_model.py

Built with the QGIS API rather than by hand so the file is exactly what the Graphical Modeler would save.
"""

import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QPointF

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "processing_provider" / "models" / "segment_smooth_refine_render.model3"
sys.path.insert(0, str(ROOT / ".build" / "plugins"))

Source = QgsProcessingModelChildParameterSource


def child(model, child_id, algorithm_id, sources, x):
    algorithm = QgsProcessingModelChildAlgorithm(algorithm_id)
    algorithm.setChildId(child_id)
    algorithm.setDescription(child_id.replace("_", " ").capitalize())
    algorithm.setPosition(QPointF(x, 200))
    for name, source in sources.items():
        algorithm.addParameterSources(name, [source])
    return algorithm


def build():
    model = QgsProcessingModelAlgorithm("Segment, smooth, refine and render", "Segmentation", "segmentation")
    model.setHelpContent({"ALG_DESC": (
        "The whole Map Segmenter chain in one step: segmenter:kmeans, then segmenter:blur (majority, chosen "
        "strength), segmenter:knn_refine with the K-Means features, then segmenter:render. Open it in the "
        "Graphical Modeler to change any step. From qgis_process its output is named render:Segments, e.g. "
        "qgis_process run segmenter:segment_smooth_refine_render -- "
        "INPUT=ortho.tif render:Segments=segments.tif. BANDS: the bands to segment (default the first three "
        "that are not alpha; needed for 1- or 2-band rasters).")})
    parameters = [
        (QgsProcessingParameterRasterLayer("INPUT", "Input raster"), 100),
        (QgsProcessingParameterBand("BANDS", "Bands (default: the first three that are not alpha)", None, "INPUT",
                                    True, True), 175),
        (QgsProcessingParameterNumber("SEGMENTS", "Segments (K)", QgsProcessingParameterNumber.Integer, 8,
                                      False, 2, 254), 250),
        (QgsProcessingParameterNumber("BLOCK_SIZE", "Block size (px)", QgsProcessingParameterNumber.Integer, 4,
                                      False, 1, 4096), 400),
        (QgsProcessingParameterEnum("STRENGTH", "Smoothing strength", ["low", "medium", "high"], False, 1), 550),
    ]
    for definition, x in parameters:
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(x, 60))
        model.addModelParameter(definition, component)

    kmeans = child(model, "kmeans", "segmenter:kmeans", {
        "INPUT": Source.fromModelParameter("INPUT"), "BANDS": Source.fromModelParameter("BANDS"),
        "SEGMENTS": Source.fromModelParameter("SEGMENTS"),
        "BLOCK_SIZE": Source.fromModelParameter("BLOCK_SIZE"), "SEED": Source.fromStaticValue(0),
        "OUTPUT": Source.fromStaticValue("TEMPORARY_OUTPUT"),
        "FEATURES": Source.fromStaticValue("TEMPORARY_OUTPUT")}, 100)
    blur = child(model, "blur", "segmenter:blur", {
        "INPUT": Source.fromChildOutput("kmeans", "OUTPUT"), "METHOD": Source.fromStaticValue(0),
        "STRENGTH": Source.fromModelParameter("STRENGTH"), "RADIUS": Source.fromStaticValue(0),
        "ITERATIONS": Source.fromStaticValue(1), "OUTPUT": Source.fromStaticValue("TEMPORARY_OUTPUT")}, 300)
    refine = child(model, "knn_refine", "segmenter:knn_refine", {
        "LABELS": Source.fromChildOutput("blur", "OUTPUT"),
        "FEATURES": Source.fromChildOutput("kmeans", "FEATURES"),
        "OUTPUT": Source.fromStaticValue("TEMPORARY_OUTPUT")}, 500)
    render = child(model, "render", "segmenter:render", {
        "INPUT": Source.fromChildOutput("knn_refine", "OUTPUT"), "PALETTE": Source.fromStaticValue(0)}, 700)
    output = QgsProcessingModelOutput("Segments", "Segments")
    output.setChildId("render")
    output.setChildOutputName("OUTPUT")
    render.setModelOutputs({"Segments": output})
    for algorithm in (kmeans, blur, refine, render):
        model.addChildAlgorithm(algorithm)
    model.updateDestinationParameters()
    model.setParameterOrder(["INPUT", "BANDS", "SEGMENTS", "BLOCK_SIZE", "STRENGTH"])
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(TARGET)):
        raise SystemExit(f"could not write {TARGET}")
    return TARGET


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    from map_segmenter.processing_provider.provider import SegmenterProvider

    provider = SegmenterProvider()  # the children must resolve for the model's outputs to be typed
    QgsApplication.processingRegistry().addProvider(provider)
    print(build())
    app.exitQgis()
