"""Label rasters load styled in QGIS: a paletted renderer with exactly K named classes, nodata transparent.

Processing loads outputs without their ``.qml`` (and a style sidecar may be absent, see ``engine.rasters.labels``), so
the renderer is built from what the raster itself carries: K and the names in its metadata, the colours in its
colour table. The same renderer serves the algorithm dialog, the batch dialog, Modeler runs and
``processing.runAndLoadResults`` (through a layer post-processor) and layers added any other way (the plugin's
``style_unstyled_label_layers``).
"""

from qgis.core import QgsPalettedRasterRenderer, QgsProcessingLayerPostProcessorInterface, QgsRasterLayer
from qgis.PyQt.QtGui import QColor

from ..engine.rasters.labels import read_legend
from .paths import layer_path


def label_renderer(layer):
    """A paletted renderer of the label raster ``layer``'s K segments, or None when it is not one of ours."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    legend = read_legend(layer_path(layer))
    if not legend:
        return None
    classes = [QgsPalettedRasterRenderer.Class(entry.value, QColor(*entry.colour), entry.name) for entry in legend]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def apply_label_style(layer):
    """Give ``layer`` the K-class renderer; True when it is a label raster of ours."""
    renderer = label_renderer(layer)
    if renderer is None:
        return False
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return True


def is_unstyled_label_layer(layer):
    """A label raster of ours drawn with QGIS's default: a paletted renderer with one class per colour-table
    entry (256 for a Byte GeoTIFF) instead of K. A layer the user styled otherwise is left alone."""
    renderer = layer.renderer() if isinstance(layer, QgsRasterLayer) else None
    if not isinstance(renderer, QgsPalettedRasterRenderer):
        return False
    legend = read_legend(layer_path(layer)) if layer.providerType() == "gdal" else None
    return bool(legend) and len(renderer.classes()) != len(legend)


class LabelStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles a label output when Processing loads it (QGIS calls this once the layer is in the project)."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        apply_label_style(layer)


_POST_PROCESSORS = []  # QGIS only borrows post-processors: Python must keep them alive


def style_when_loaded(context, path):
    """Ask Processing to style the label raster at ``path`` if it is going to load it."""
    if path and context.willLoadLayerOnCompletion(path):
        processor = LabelStylePostProcessor()
        _POST_PROCESSORS.append(processor)
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)


# -- segment polygons (segmenter:statistics) --------------------------------------------------------------------


def polygon_renderer(legend, field="segment"):
    """A categorised renderer of segment polygons: one category per (value, RGB colour, name) of ``legend``,
    filled with the segment's colour (as the label raster draws it) and outlined a little darker: the style the
    engine also stores in the GeoPackage (engine.steps.statistics.polygon_style_qml)."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsFillSymbol, QgsRendererCategory

    from ..engine.steps.statistics import outline_colour

    categories = []
    for value, colour, name in legend:
        symbol = QgsFillSymbol.createSimple({"color": QColor(*colour).name(),
                                             "outline_color": QColor(*outline_colour(colour)).name(),
                                             "outline_width": "0.1"})
        categories.append(QgsRendererCategory(value, symbol, name))
    return QgsCategorizedSymbolRenderer(field, categories)


class PolygonStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Gives segment polygons their categorised style when Processing loads them."""

    def __init__(self, legend):
        super().__init__()
        self.legend = legend

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        layer.setRenderer(polygon_renderer(self.legend))
        layer.triggerRepaint()


def style_polygons_when_loaded(context, path, legend):
    """Ask Processing to style the segment polygons at ``path`` (with ``legend``) if it is going to load them."""
    if path and context.willLoadLayerOnCompletion(path):
        processor = PolygonStylePostProcessor(legend)
        _POST_PROCESSORS.append(processor)
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)
