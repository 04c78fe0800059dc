"""Regenerate the shipped models in processing_provider/models/: segment_smooth_refine_render.model3 (kmeans -> blur
-> knn_refine -> render) and segment_smooth_refine_render_statistics.model3 (the same, then statistics: table,
polygons and report).

    source scripts/env.sh && python scripts/build_model.py

Built with the QGIS API rather than by hand so the file is exactly what the Graphical Modeler would save.
"""

import os
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
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QPointF, QSizeF  # noqa: E402

from map_segmenter.algorithms.qgis_compat import (  # noqa: E402
    ProcessingNumberParameterType,
    ProcessingParameterFlag,
    ProcessingSourceType,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "processing_provider" / "models"
TARGET = MODELS / "segment_smooth_refine_render.model3"
STATISTICS_TARGET = MODELS / "segment_smooth_refine_render_statistics.model3"

Source = QgsProcessingModelChildParameterSource
BOX = QSizeF(220, 50)  # every box the same size; the grid below keeps them 40 px apart
COLUMN = 260
HELP = {
    "INPUT": "The raster to segment: any raster GDAL reads (GeoTIFF, JPEG, VRT...).",
    "BANDS": "Bands to segment; empty: the first three that are not alpha. Choose band 1 for a grey-scale raster.",
    "SEGMENTS": ("How many kinds of region to find (2-254); 0 (the default): chosen from the raster between 2 and 12, "
                 "the log shows the evidence, and Merge segments cuts the result to fewer segments later."),
    "BLOCK_SIZE": "Side of the blocks K-Means describes: 4 = fine, 8 = medium, 16 = coarse.",
    "STRENGTH": ("How much the segments are smoothed before the refinement. On labelled aerial tiles High then "
                 "the refinement measured best; Low and Medium keep smaller details."),
    "EXTENT": "Optional: segment only this area (required for web layers).",
    "PIXEL_SIZE": "Pixel size web and vector layers are drawn at, in their CRS units; 0 = the layer's finest.",
    "MASK": "Optional: only pixels inside these polygons are segmented.",
    "SCHEDULER": ("Optional: the address of a Dask scheduler (e.g. tcp://10.0.0.5:8786) whose workers run the "
                  "segmentation, smoothing and refinement windows, with the same result; empty = this computer. "
                  "The workers must see the input under the same path."),
}
PER_ROW = 5  # nine inputs in two rows above the steps


def child(child_id, algorithm_id, description, sources, column, row):
    """A step with every parameter given: the ``sources`` named here, every other one at its default, so the
    Modeler shows no step as invalid and a later default change cannot silently change the model."""
    algorithm = QgsProcessingModelChildAlgorithm(algorithm_id)
    algorithm.setChildId(child_id)
    algorithm.setDescription(description)
    algorithm.setPosition(QPointF(120 + column * COLUMN, 290 + row * 110))
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


CHAIN = ("K-Means segmentation, then Smooth segments (majority vote, chosen strength), then Latent KNN refinement "
         "with the K-Means block descriptors, then Render segments")
EDITING = ("To change a step, right-click the model in the Processing Toolbox and choose Edit a Copy in the Graphical "
           "Modeler; save the copy among your own models.")
DESCRIPTIONS = {
    TARGET: ("Segment, smooth, refine and render", (
        f"The whole Map Segmenter chain in one step: {CHAIN}. {EDITING} From qgis_process its output is named "
        "render:Segments, e.g. qgis_process run segmenter:segment_smooth_refine_render -- INPUT=ortho.tif "
        "render:Segments=segments.tif.")),
    STATISTICS_TARGET: ("Segment, smooth, refine, render and measure", (
        f"The Map Segmenter chain with its measurements as a last step: {CHAIN}, then Segment statistics and "
        "polygons on the rendered segments. Outputs: the styled "
        "segments, the statistics table (pixels, area and share per segment), and optionally the segment polygons "
        "(GeoPackage, styled like the segments) and an HTML report with a chart. "
        f"{EDITING} From qgis_process its outputs are named render:Segments, statistics:Statistics, "
        "statistics:Polygons and statistics:Report, e.g. qgis_process run "
        "segmenter:segment_smooth_refine_render_statistics -- INPUT=ortho.tif render:Segments=segments.tif "
        "statistics:Statistics=table.csv statistics:Polygons=polygons.gpkg.")),
}


def model_output(name, child_id, child_output, column, row):
    """A model output; it is optional and created by default exactly when the child's destination is."""
    output = QgsProcessingModelOutput(name, name)
    output.setChildId(child_id)
    output.setChildOutputName(child_output)
    output.setPosition(QPointF(120 + column * COLUMN, 290 + row * 110))
    output.setSize(BOX)
    return output


def build(target=TARGET):
    """The model at ``target``: the four-step chain, and for STATISTICS_TARGET a statistics step after it."""
    name, description = DESCRIPTIONS[target]
    model = QgsProcessingModelAlgorithm(name, "Segmentation", "segmentation")
    model.setHelpContent({"ALG_DESC": description, "ALG_CREATOR": "Map Segmenter developers", **HELP})
    parameters = [
        QgsProcessingParameterMapLayer("INPUT", "Input layer"),
        QgsProcessingParameterBand("BANDS", "Bands (default: first three)", None, "INPUT", True, True),
        QgsProcessingParameterNumber("SEGMENTS", "Number of segments (K; 0 = automatic)",
                                     ProcessingNumberParameterType.Integer, 0, False, 0, 254),
        QgsProcessingParameterNumber("BLOCK_SIZE", "Block size (px)", ProcessingNumberParameterType.Integer, 4,
                                     False, 1, 4096),
        # Medium, as segmenter:blur: a model input left out (processing.run, qgis_process) takes the child's default
        QgsProcessingParameterEnum("STRENGTH", "Smoothing strength", ["Low", "Medium", "High"], False, 1),
        QgsProcessingParameterExtent("EXTENT", "Area to segment", optional=True),
        QgsProcessingParameterNumber("PIXEL_SIZE", "Pixel size for drawn layers (0 = native)",
                                     ProcessingNumberParameterType.Double, 0.0, False, 0.0),
        QgsProcessingParameterFeatureSource("MASK", "Mask polygons", [ProcessingSourceType.VectorPolygon],
                                            optional=True),
        QgsProcessingParameterString("SCHEDULER", "Dask scheduler (empty = this computer)", optional=True),
    ]
    parameters[-1].setFlags(parameters[-1].flags() | ProcessingParameterFlag.Advanced)
    for number, definition in enumerate(parameters):
        definition.setHelp(HELP[definition.name()])
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120 + (number % PER_ROW) * COLUMN, 60 + (number // PER_ROW) * 90))
        component.setSize(BOX)
        model.addModelParameter(definition, component)

    kmeans = child("kmeans", "segmenter:kmeans", "Segment (K-Means)", {
        "INPUT": Source.fromModelParameter("INPUT"), "BANDS": Source.fromModelParameter("BANDS"),
        # SEGMENTS left out (processing.run, qgis_process) would take the child's default (8): the expression gives
        # the model's own default, 0 (automatic K), and the value given otherwise
        "SEGMENTS": Source.fromExpression("coalesce(@SEGMENTS, 0)"),
        "BLOCK_SIZE": Source.fromModelParameter("BLOCK_SIZE"),
        "EXTENT": Source.fromModelParameter("EXTENT"), "PIXEL_SIZE": Source.fromModelParameter("PIXEL_SIZE"),
        "MASK": Source.fromModelParameter("MASK"), "SCHEDULER": Source.fromModelParameter("SCHEDULER")},
        0, 0)
    blur = child("blur", "segmenter:blur", "Smooth segments", {
        "INPUT": Source.fromChildOutput("kmeans", "OUTPUT"), "STRENGTH": Source.fromModelParameter("STRENGTH"),
        "SCHEDULER": Source.fromModelParameter("SCHEDULER")},
        1, 1)
    refine = child("knn_refine", "segmenter:knn_refine", "Refine by nearest neighbours", {
        "LABELS": Source.fromChildOutput("blur", "OUTPUT"),
        "FEATURES": Source.fromChildOutput("kmeans", "FEATURES"),
        "SCHEDULER": Source.fromModelParameter("SCHEDULER")}, 2, 2)
    render = child("render", "segmenter:render", "Render segments", {
        "INPUT": Source.fromChildOutput("knn_refine", "OUTPUT")}, 3, 3)
    kmeans.addParameterSources("FEATURES", [Source.fromStaticValue("TEMPORARY_OUTPUT")])
    steps = [kmeans, blur, refine, render]
    if target == STATISTICS_TARGET:
        statistics = child("statistics", "segmenter:statistics", "Segment statistics and polygons", {
            "INPUT": Source.fromChildOutput("render", "OUTPUT")},  # no IMAGE: a drawn or cut INPUT is not on its grid
            4, 4)
        statistics.setModelOutputs({
            "Statistics": model_output("Statistics", "statistics", "OUTPUT", 3, 5),
            "Polygons": model_output("Polygons", "statistics", "POLYGONS", 4, 5),
            "Report": model_output("Report", "statistics", "REPORT", 5, 5)})
        steps.append(statistics)
        render.setModelOutputs({"Segments": model_output("Segments", "render", "OUTPUT", 4, 3)})
    else:
        render.setModelOutputs({"Segments": model_output("Segments", "render", "OUTPUT", 4, 4)})
    for algorithm in steps:
        model.addChildAlgorithm(algorithm)
    model.updateDestinationParameters()
    model.setParameterOrder([definition.name() for definition in parameters])
    problems = {child_id: issues for child_id in model.childAlgorithms()
                for ok, issues in [model.validateChildAlgorithm(child_id)] if not ok}
    if problems:
        raise SystemExit(f"the model does not validate: {problems}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(target)):
        raise SystemExit(f"could not write {target}")
    return target


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    from map_segmenter.processing_provider.provider import SegmenterProvider

    provider = SegmenterProvider()  # the children must resolve for the model's outputs to be typed
    QgsApplication.processingRegistry().addProvider(provider)
    for target in (TARGET, STATISTICS_TARGET):
        print(build(target))
    app.exitQgis()
