"""``segmenter:render``: colours, names, .qml, optional RGBA composite over the imagery and PNG quicklook."""

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..engine.render import PALETTES, render_labels
from .base import POSTPROCESSING, SegmenterAlgorithm


def split_names(text):
    """Segment names from NAMES: separated by semicolons when there is one (names may then hold commas), else by
    commas; None when empty."""
    if not text.strip():
        return None
    return [name.strip() for name in text.split(";" if ";" in text else ",")]


class RenderAlgorithm(SegmenterAlgorithm):
    GROUP = POSTPROCESSING
    ID = "render"

    def displayName(self):  # noqa: N802 - QGIS API
        return self.tr("Render segments")

    def shortDescription(self):  # noqa: N802 - QGIS API
        return self.tr("Colours, segment names and style; an RGBA composite over the imagery and a PNG quicklook.")

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return self.tr(
            "Styles a segmentation for maps and export.\n\n"
            "Segments: a label raster (segments 1..K, 0 = nodata), e.g. the result of K-Means segmentation, "
            "Smooth segments or Latent KNN refinement.\n"
            "Palette: Distinct colours (up to 24 hand-picked colours, then evenly spread hues); Segment mean "
            "colour (each segment takes the mean colour of its pixels in Image, so the map looks like the "
            "image); Colour ramp (viridis, from segment 1, the darkest, to K).\n"
            "Segment names: optional names in segment order, separated by commas, or by semicolons when a name "
            "holds a comma (default Segment 1 .. Segment K).\n"
            "Image: the raster the segments were made from (same grid); needed for the mean-colour palette and "
            "the composite.\n"
            "Composite opacity: opacity of the segment colours in the composite (0 = imagery only, 1 = colours "
            "only).\n\n"
            "Styled segments: the segments with the palette as colour table and the names in their metadata; "
            "they load styled in QGIS.\n"
            "Composite (optional): RGBA GeoTIFF of the segment colours blended over Image, transparent on "
            "nodata, for export and web maps.\n"
            "Quicklook (optional): PNG of the segment colours, at most 1024 px on its longer side."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add(QgsProcessingParameterRasterLayer("INPUT", self.tr("Segments")),
                 self.tr("A label raster, e.g. the result of K-Means segmentation."))
        palettes = [self.tr("Distinct colours"), self.tr("Segment mean colour (needs Image)"),
                    self.tr("Colour ramp (viridis)")]
        self.add(QgsProcessingParameterEnum("PALETTE", self.tr("Palette"), palettes, False, 0),
                 self.tr("How segments are coloured."))
        self.add(QgsProcessingParameterString("NAMES", self.tr("Segment names (comma-separated)"), optional=True),
                 self.tr("Names in segment order, e.g. water, trees, roofs. Use semicolons when a name holds a "
                         "comma."))
        self.add(QgsProcessingParameterRasterLayer("IMAGE", self.tr("Image (for mean colour and composite)"),
                                                   optional=True),
                 self.tr("The raster the segments were made from."))
        self.decimal("OPACITY", self.tr("Composite opacity"), 0.5, 0.0, 1.0,
                     self.tr("Opacity of the segment colours over the image (0 = image only, 1 = colours only)."))
        self.add_label_output(self.tr("Styled segments"))
        self.add(QgsProcessingParameterRasterDestination("COMPOSITE", self.tr("Composite (RGBA)"), optional=True,
                                                         createByDefault=False),
                 self.tr("Segment colours blended over Image, for export and web maps."))
        self.add(QgsProcessingParameterFileDestination("QUICKLOOK", self.tr("Quicklook"), self.tr("PNG files (*.png)"),
                                                       optional=True, createByDefault=False),
                 self.tr("A PNG picture of the segment colours, at most 1024 px on its longer side."))

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
        extra = {}
        if result.composite:
            extra["COMPOSITE"] = result.composite
        if result.quicklook:
            extra["QUICKLOOK"] = result.quicklook
        return self.label_outputs(context, result.output, result.present, **extra)
