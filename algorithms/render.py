"""``segmenter:render``: colours, names, .qml, optional RGBA composite over the imagery and PNG quicklook."""

from qgis.core import (
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..engine.render import PALETTES, render_labels
from .base import SegmenterAlgorithm

PALETTE_NAMES = ["Qualitative (distinct colours)", "Segment mean colour (needs IMAGE)", "Continuous ramp (viridis)"]

HELP = """Styles a label raster for maps and export.

INPUT: a label raster (ids 1..K, 0 = nodata), e.g. the OUTPUT of segmenter:kmeans, segmenter:blur or segmenter:knn_refine.
PALETTE: Qualitative — up to 24 hand-picked distinct colours, then evenly spread hues; Segment mean colour — each segment takes the mean colour of its pixels in IMAGE, so the map looks like the image; Continuous ramp — viridis from segment 1 (darkest) to K.
NAMES: optional segment names in id order, separated by commas, or by semicolons when a name holds a comma (default "Segment 1" .. "Segment K").
IMAGE: the raster the labels were made from (same grid); needed for the mean-colour palette and the composite.
OPACITY: opacity of the segment colours in the composite (0 = imagery only, 1 = colours only).

OUTPUT: the labels with the palette as colour table, a .qml sidecar and the names in its metadata; it loads styled in QGIS.
COMPOSITE (optional): RGBA GeoTIFF of the segment colours blended over IMAGE, alpha 0 on nodata — for export and web maps.
QUICKLOOK (optional): PNG of the segment colours, at most 1024 px on its longer side."""


def split_names(text):
    """Segment names from NAMES: separated by semicolons when there is one (names may then hold commas), else by
    commas; None when empty."""
    if not text.strip():
        return None
    return [name.strip() for name in text.split(";" if ";" in text else ",")]


class _LoadStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies the written .qml when the GUI loads the output layer."""

    def __init__(self, qml):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        layer.loadNamedStyle(self.qml)
        layer.triggerRepaint()


class RenderAlgorithm(SegmenterAlgorithm):
    GROUP = ("postprocessing", "Post-processing")
    ID = "render"
    TITLE = "Render segments"
    SUMMARY = "Colour table, names, .qml, RGBA composite over the imagery and a PNG quicklook."
    HELP = HELP

    _post_processors = []  # QGIS holds only a pointer: keep them alive

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Label raster"))
        self.addParameter(QgsProcessingParameterEnum("PALETTE", "Palette", PALETTE_NAMES, False, 0))
        self.addParameter(QgsProcessingParameterString("NAMES", "Segment names (comma-separated)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("IMAGE", "Image (for mean colour and composite)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterNumber("OPACITY", "Composite opacity",
                                                       QgsProcessingParameterNumber.Double, 0.5, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Styled segments"))
        self.addParameter(QgsProcessingParameterRasterDestination("COMPOSITE", "Composite (RGBA)", optional=True,
                                                                  createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination("QUICKLOOK", "Quicklook", "PNG files (*.png)",
                                                                optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("SEGMENTS", "Number of segments"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        names = self.parameterAsString(parameters, "NAMES", context)
        result = self.run_engine(
            render_labels,
            feedback,
            input_path=self.raster_path(parameters, "INPUT", context),
            output_path=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            palette=PALETTES[self.parameterAsEnum(parameters, "PALETTE", context)],
            image_path=self.raster_path(parameters, "IMAGE", context, required=False),
            opacity=self.parameterAsDouble(parameters, "OPACITY", context),
            composite_path=self.parameterAsOutputLayer(parameters, "COMPOSITE", context) or None,
            quicklook_path=self.parameterAsFileOutput(parameters, "QUICKLOOK", context) or None,
            names=split_names(names),
        )
        if context.willLoadLayerOnCompletion(result.output):
            processor = _LoadStyle(result.output.rsplit(".", 1)[0] + ".qml")
            self._post_processors.append(processor)
            context.layerToLoadOnCompletionDetails(result.output).setPostProcessor(processor)
        outputs = {"OUTPUT": result.output, "SEGMENTS": result.present}
        if result.composite:
            outputs["COMPOSITE"] = result.composite
        if result.quicklook:
            outputs["QUICKLOOK"] = result.quicklook
        return outputs
