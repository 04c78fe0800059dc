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
from map_segmenter.engine.runtime import params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "processing_provider" / "models"
TARGET = MODELS / "segment_smooth_refine_render.model3"
STATISTICS_TARGET = MODELS / "segment_smooth_refine_render_statistics.model3"

Source = QgsProcessingModelChildParameterSource
BOX = QSizeF(220, 50)  # every box the same size; the grid below keeps them 40 px apart
COLUMN = 260
HELP = {
    params.INPUT: "The raster to segment: any raster GDAL reads (GeoTIFF, JPEG, VRT...).",
    params.BANDS: "Bands to segment; empty: the first three that are not alpha. Choose band 1 for a grey-scale raster.",
    params.SEGMENTS: ("How many kinds of region to find (2-254); 0 (the default): chosen from the raster between 2 "
                      "and 12, the log shows the evidence, and Merge segments cuts the result to fewer segments "
                      "later."),
    params.BLOCK_SIZE: "Side of the blocks K-Means describes: 4 = fine, 8 = medium, 16 = coarse.",
    params.STRENGTH: ("How much the segments are smoothed before the refinement. On labelled aerial tiles High "
                      "then the refinement measured best; Low and Medium keep smaller details."),
    params.EXTENT: "Optional: segment only this area (required for web layers).",
    params.PIXEL_SIZE: "Pixel size web and vector layers are drawn at, in their CRS units; 0 = the layer's finest.",
    params.MASK: "Optional: only pixels inside these polygons are segmented.",
    params.SCHEDULER: ("Optional: the address of a Dask scheduler (e.g. tcp://10.0.0.5:8786) whose workers run "
                       "the segmentation, smoothing and refinement windows, with the same result; empty = this "
                       "computer. The workers must see the input under the same path."),
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
        QgsProcessingParameterMapLayer(params.INPUT, "Input layer"),
        QgsProcessingParameterBand(params.BANDS, "Bands (default: first three)", None, params.INPUT, True, True),
        QgsProcessingParameterNumber(params.SEGMENTS, "Number of segments (K; 0 = automatic)",
                                     ProcessingNumberParameterType.Integer, 0, False, 0, 254),
        QgsProcessingParameterNumber(params.BLOCK_SIZE, "Block size (px)", ProcessingNumberParameterType.Integer, 4,
                                     False, 1, 4096),
        # Medium, as segmenter:blur: a model input left out (processing.run, qgis_process) takes the child's default
        QgsProcessingParameterEnum(params.STRENGTH, "Smoothing strength", ["Low", "Medium", "High"], False, 1),
        QgsProcessingParameterExtent(params.EXTENT, "Area to segment", optional=True),
        QgsProcessingParameterNumber(params.PIXEL_SIZE, "Pixel size for drawn layers (0 = native)",
                                     ProcessingNumberParameterType.Double, 0.0, False, 0.0),
        QgsProcessingParameterFeatureSource(params.MASK, "Mask polygons", [ProcessingSourceType.VectorPolygon],
                                            optional=True),
        QgsProcessingParameterString(params.SCHEDULER, "Dask scheduler (empty = this computer)", optional=True),
    ]
    parameters[-1].setFlags(parameters[-1].flags() | ProcessingParameterFlag.Advanced)
    for number, definition in enumerate(parameters):
        definition.setHelp(HELP[definition.name()])
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120 + (number % PER_ROW) * COLUMN, 60 + (number // PER_ROW) * 90))
        component.setSize(BOX)
        model.addModelParameter(definition, component)

    kmeans = child("kmeans", "segmenter:kmeans", "Segment (K-Means)", {
        params.INPUT: Source.fromModelParameter(params.INPUT), params.BANDS: Source.fromModelParameter(params.BANDS),
        # SEGMENTS left out (processing.run, qgis_process) would take the child's default (8): the expression gives
        # the model's own default, 0 (automatic K), and the value given otherwise
        params.SEGMENTS: Source.fromExpression(f"coalesce(@{params.SEGMENTS}, 0)"),
        params.BLOCK_SIZE: Source.fromModelParameter(params.BLOCK_SIZE),
        params.EXTENT: Source.fromModelParameter(params.EXTENT),
        params.PIXEL_SIZE: Source.fromModelParameter(params.PIXEL_SIZE),
        params.MASK: Source.fromModelParameter(params.MASK),
        params.SCHEDULER: Source.fromModelParameter(params.SCHEDULER)},
        0, 0)
    blur = child("blur", "segmenter:blur", "Smooth segments", {
        params.INPUT: Source.fromChildOutput("kmeans", params.OUTPUT),
        params.STRENGTH: Source.fromModelParameter(params.STRENGTH),
        params.SCHEDULER: Source.fromModelParameter(params.SCHEDULER)},
        1, 1)
    refine = child("knn_refine", "segmenter:knn_refine", "Refine by nearest neighbours", {
        params.LABELS: Source.fromChildOutput("blur", params.OUTPUT),
        params.FEATURES: Source.fromChildOutput("kmeans", params.FEATURES),
        params.SCHEDULER: Source.fromModelParameter(params.SCHEDULER)}, 2, 2)
    render = child("render", "segmenter:render", "Render segments", {
        params.INPUT: Source.fromChildOutput("knn_refine", params.OUTPUT),
        params.SCHEDULER: Source.fromModelParameter(params.SCHEDULER)}, 3, 3)
    kmeans.addParameterSources(params.FEATURES, [Source.fromStaticValue("TEMPORARY_OUTPUT")])
    steps = [kmeans, blur, refine, render]
    if target == STATISTICS_TARGET:
        statistics = child("statistics", "segmenter:statistics", "Segment statistics and polygons", {
            # no IMAGE: a drawn or cut INPUT is not on its grid
            params.INPUT: Source.fromChildOutput("render", params.OUTPUT),
            params.SCHEDULER: Source.fromModelParameter(params.SCHEDULER)},
            4, 4)
        statistics.setModelOutputs({
            "Statistics": model_output("Statistics", "statistics", params.OUTPUT, 3, 5),
            "Polygons": model_output("Polygons", "statistics", params.POLYGONS, 4, 5),
            "Report": model_output("Report", "statistics", params.REPORT, 5, 5)})
        steps.append(statistics)
        render.setModelOutputs({"Segments": model_output("Segments", "render", params.OUTPUT, 4, 3)})
    else:
        render.setModelOutputs({"Segments": model_output("Segments", "render", params.OUTPUT, 4, 4)})
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
