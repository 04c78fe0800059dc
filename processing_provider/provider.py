"""The ``segmenter`` Processing provider."""

import os

from qgis.core import QgsApplication, QgsProcessingProvider
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..engine.runtime.outputs import RASTER_EXTENSIONS
from .shipped_models import shipped_models

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")


class SegmenterProvider(QgsProcessingProvider):
    def __init__(self):
        super().__init__()
        self.models = []
        QgsApplication.processingRegistry().providerAdded.connect(self._attach_models)

    def _attach_models(self, provider_id):
        if provider_id == self.id():
            for model in self.models:
                model.attach_children()

    def id(self):
        return "segmenter"

    def name(self):
        return "Map Segmenter"

    def longName(self):  # noqa: N802 - QGIS API
        return QCoreApplication.translate("SegmenterProvider", "Map Segmenter (unsupervised raster segmentation)")

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return ICON

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm in _algorithms():
            self.addAlgorithm(algorithm)
        self.models = shipped_models()
        for model in self.models:
            self.addAlgorithm(model)

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 - QGIS API
        return list(RASTER_EXTENSIONS)  # what the engine writes (GeoTIFF); other names are refused

    def supportedOutputVectorLayerExtensions(self):  # noqa: N802 - QGIS API
        return ["gpkg", "csv"]  # what segmenter:statistics writes (its polygons: GeoPackage only)


def _algorithms():
    # One import per line; imported here so plugin start-up stays cheap until Processing asks.
    from ..algorithms.blur import BlurAlgorithm
    from ..algorithms.cnn import CnnAlgorithm
    from ..algorithms.kmeans import KMeansAlgorithm
    from ..algorithms.knn_refine import KnnRefineAlgorithm
    from ..algorithms.merge import MergeAlgorithm
    from ..algorithms.render import RenderAlgorithm
    from ..algorithms.statistics import StatisticsAlgorithm

    return [
        KMeansAlgorithm(),
        CnnAlgorithm(),
        BlurAlgorithm(),
        KnnRefineAlgorithm(),
        MergeAlgorithm(),
        RenderAlgorithm(),
        StatisticsAlgorithm(),
    ]
