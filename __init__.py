"""Map Segmenter: a QGIS Processing provider for unsupervised segmentation of map rasters."""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from .processing_provider.plugin import MapSegmenterPlugin

    return MapSegmenterPlugin(iface)
