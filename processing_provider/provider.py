"""The ``segmenter`` Processing provider."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")


class SegmenterProvider(QgsProcessingProvider):
    def id(self):
        return "segmenter"

    def name(self):
        return "Map Segmenter"

    def longName(self):  # noqa: N802 - QGIS API
        return "Map Segmenter (unsupervised raster segmentation)"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return ICON

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm in _algorithms():
            self.addAlgorithm(algorithm)

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 - QGIS API
        return ["tif"]


def _algorithms():
    # One import per line; imported here so plugin start-up stays cheap until Processing asks.
    from ..algorithms.kmeans import KMeansAlgorithm

    return [
        KMeansAlgorithm(),
    ]
