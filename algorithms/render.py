"""``segmenter:render``: colours, names, .qml, optional RGBA composite over the imagery and PNG quicklook."""

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..engine.runtime import params
from ..engine.steps.render import PALETTES, render_labels
from .base import LabelStepAlgorithm


def split_names(text: str) -> list[str] | None:
    """Segment names from NAMES: separated by semicolons when there is one (names may then hold commas), else by
    commas; None when empty.

    Parameters
    ----------
    text : str
        The NAMES value.

    Returns
    -------
    list of str or None
        The names, stripped, in segment order; None when ``text`` is blank.
    """
    if not text.strip():
        return None
    return [name.strip() for name in text.split(";" if ";" in text else ",")]


class RenderAlgorithm(LabelStepAlgorithm):
    ID = "render"
    ENGINE = staticmethod(render_labels)

    def texts(self):
        title = self.tr("Render segments")
        summary = self.tr("Colours, segment names and style; an RGBA composite over the imagery and a PNG quicklook.")
        return title, summary, self.tr(
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
            "only).\n"
            "Memory budget (advanced): working memory; the result does not depend on it.\n"
            "Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; "
            "its workers process the windows (reading Segments and Image themselves), with the same result. Empty = "
            "this computer.\n\n"
            "Styled segments: the segments with the palette as colour table and the names in their metadata; "
            "they load styled in QGIS.\n"
            "Composite (optional): RGBA GeoTIFF of the segment colours blended over Image, transparent on "
            "nodata, for export and web maps.\n"
            "Quicklook (optional): PNG of the segment colours, at most 1024 px on its longer side."
        )

    def io_texts(self):
        return self.tr("A label raster, e.g. the result of K-Means segmentation."), self.tr("Styled segments")

    def add_method_settings(self):
        palettes = [self.tr("Distinct colours"), self.tr("Segment mean colour (needs Image)"),
                    self.tr("Colour ramp (viridis)")]
        self.add(QgsProcessingParameterEnum(params.PALETTE, self.tr("Palette"), palettes, False, 0),
                 self.tr("How segments are coloured."))
        self.add(QgsProcessingParameterString(params.NAMES, self.tr("Segment names (comma-separated)"),
                                              optional=True),
                 self.tr("Names in segment order, e.g. water, trees, roofs. Use semicolons when a name holds a "
                         "comma."))
        self.add(QgsProcessingParameterRasterLayer(params.IMAGE, self.tr("Image (for mean colour and composite)"),
                                                   optional=True),
                 self.tr("The raster the segments were made from."))
        self.decimal(params.OPACITY, self.tr("Composite opacity"), 0.5, 0.0, 1.0,
                     self.tr("Opacity of the segment colours over the image (0 = image only, 1 = colours only)."))
        self.add_memory_and_scheduler()

    def add_method_outputs(self):
        self.add(QgsProcessingParameterRasterDestination(params.COMPOSITE, self.tr("Composite (RGBA)"),
                                                         optional=True, createByDefault=False),
                 self.tr("Segment colours blended over Image, for export and web maps."))
        self.add(QgsProcessingParameterFileDestination(params.QUICKLOOK, self.tr("Quicklook"),
                                                       self.tr("PNG files (*.png)"), optional=True,
                                                       createByDefault=False),
                 self.tr("A PNG picture of the segment colours, at most 1024 px on its longer side."))

    def method_arguments(self, parameters, context):
        return dict(
            palette=PALETTES[self.parameterAsEnum(parameters, params.PALETTE, context)],
            image_path=self.raster_path(parameters, params.IMAGE, context, required=False),
            opacity=self.parameterAsDouble(parameters, params.OPACITY, context),
            composite_path=self.parameterAsOutputLayer(parameters, params.COMPOSITE, context) or None,
            quicklook_path=self.parameterAsFileOutput(parameters, params.QUICKLOOK, context) or None,
            names=split_names(self.parameterAsString(parameters, params.NAMES, context)),
            **self.memory_and_scheduler(parameters, context),
        )

    def method_outputs(self, result):
        return {name: path for name, path in ((params.COMPOSITE, result.composite),
                                              (params.QUICKLOOK, result.quicklook)) if path}
