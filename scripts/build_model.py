"""Regenerate processing_provider/models/segment_smooth_refine_render.model3 (kmeans -> blur -> knn_refine -> render).

    source scripts/env.sh && python scripts/build_model.py

Built with the QGIS API rather than by hand so the file is exactly what the Graphical Modeler would save.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_HASH_SEED", "0")  # Qt writes XML attributes in hash order: a fixed seed keeps diffs small

from qgis.core import (  # noqa: E402
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
from qgis.PyQt.QtCore import QPointF, QSizeF  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "processing_provider" / "models" / "segment_smooth_refine_render.model3"
sys.path.insert(0, str(ROOT / ".build" / "plugins"))

Source = QgsProcessingModelChildParameterSource
BOX = QSizeF(220, 50)  # every box the same size; the grid below keeps them 40 px apart
COLUMN = 260
HELP = {
    "INPUT": "The raster to segment: any raster GDAL reads (GeoTIFF, JPEG, VRT...).",
    "BANDS": "Bands to segment; empty: the first three that are not alpha. Choose band 1 for a grey-scale raster.",
    "SEGMENTS": "How many kinds of region to find (2-254).",
    "BLOCK_SIZE": "Side of the blocks K-Means describes: 4 = fine, 8 = medium, 16 = coarse.",
    "STRENGTH": ("How much the segments are smoothed before the refinement. On labelled aerial tiles High then "
                 "the refinement measured best; Low and Medium keep smaller details."),
}


def child(child_id, algorithm_id, description, sources, column, row):
    """A step with every parameter given: the ``sources`` named here, every other one at its default, so the
    Modeler shows no step as invalid and a later default change cannot silently change the model."""
    algorithm = QgsProcessingModelChildAlgorithm(algorithm_id)
    algorithm.setChildId(child_id)
    algorithm.setDescription(description)
    algorithm.setPosition(QPointF(120 + column * COLUMN, 200 + row * 110))
    algorithm.setSize(BOX)
    definitions = QgsApplication.processingRegistry().algorithmById(algorithm_id).parameterDefinitions()
    for definition in definitions:
        if definition.name() in sources:
            source = sources[definition.name()]
        elif definition.isDestination():
            continue  # an intermediate result: a temporary file
        else:
            source = Source.fromStaticValue(definition.defaultValue())
        algorithm.addParameterSources(definition.name(), [source])
    return algorithm


def build():
    model = QgsProcessingModelAlgorithm("Segment, smooth, refine and render", "Segmentation", "segmentation")
    model.setHelpContent({
        "ALG_DESC": (
            "The whole Map Segmenter chain in one step: K-Means segmentation, then Smooth segments (majority vote, "
            "chosen strength), then Latent KNN refinement with the K-Means block descriptors, then Render segments. "
            "To change a step, right-click the model in the Processing Toolbox and choose Edit a Copy in the "
            "Graphical Modeler; save the copy among your own models. From qgis_process its output is named "
            "render:Segments, e.g. qgis_process run segmenter:segment_smooth_refine_render -- INPUT=ortho.tif "
            "render:Segments=segments.tif."),
        "ALG_CREATOR": "Map Segmenter developers",
        **HELP,
    })
    parameters = [
        QgsProcessingParameterRasterLayer("INPUT", "Input raster"),
        QgsProcessingParameterBand("BANDS", "Bands (default: first three)", None, "INPUT", True, True),
        QgsProcessingParameterNumber("SEGMENTS", "Number of segments (K)", QgsProcessingParameterNumber.Integer, 8,
                                     False, 2, 254),
        QgsProcessingParameterNumber("BLOCK_SIZE", "Block size (px)", QgsProcessingParameterNumber.Integer, 4,
                                     False, 1, 4096),
        # Medium, as segmenter:blur: a model input left out (processing.run, qgis_process) takes the child's default
        QgsProcessingParameterEnum("STRENGTH", "Smoothing strength", ["Low", "Medium", "High"], False, 1),
    ]
    for column, definition in enumerate(parameters):
        definition.setHelp(HELP[definition.name()])
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120 + column * COLUMN, 60))
        component.setSize(BOX)
        model.addModelParameter(definition, component)

    kmeans = child("kmeans", "segmenter:kmeans", "Segment (K-Means)", {
        "INPUT": Source.fromModelParameter("INPUT"), "BANDS": Source.fromModelParameter("BANDS"),
        "SEGMENTS": Source.fromModelParameter("SEGMENTS"), "BLOCK_SIZE": Source.fromModelParameter("BLOCK_SIZE")},
        0, 0)
    blur = child("blur", "segmenter:blur", "Smooth segments", {
        "INPUT": Source.fromChildOutput("kmeans", "OUTPUT"), "STRENGTH": Source.fromModelParameter("STRENGTH")},
        1, 1)
    refine = child("knn_refine", "segmenter:knn_refine", "Refine by nearest neighbours", {
        "LABELS": Source.fromChildOutput("blur", "OUTPUT"),
        "FEATURES": Source.fromChildOutput("kmeans", "FEATURES")}, 2, 2)
    render = child("render", "segmenter:render", "Render segments", {
        "INPUT": Source.fromChildOutput("knn_refine", "OUTPUT")}, 3, 3)
    kmeans.addParameterSources("FEATURES", [Source.fromStaticValue("TEMPORARY_OUTPUT")])
    output = QgsProcessingModelOutput("Segments", "Segments")
    output.setChildId("render")
    output.setChildOutputName("OUTPUT")
    output.setPosition(QPointF(120 + 4 * COLUMN, 200 + 4 * 110))
    output.setSize(BOX)
    render.setModelOutputs({"Segments": output})
    for algorithm in (kmeans, blur, refine, render):
        model.addChildAlgorithm(algorithm)
    model.updateDestinationParameters()
    model.setParameterOrder([definition.name() for definition in parameters])
    problems = {child_id: issues for child_id in model.childAlgorithms()
                for ok, issues in [model.validateChildAlgorithm(child_id)] if not ok}
    if problems:
        raise SystemExit(f"the model does not validate: {problems}")
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
