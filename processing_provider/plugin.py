"""Plugin glue: registers the provider in initProcessing() (also called by qgis_process) and removes it on unload."""

from qgis.core import QgsApplication

from .provider import SegmenterProvider


class MapSegmenterPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 - QGIS API
        self.provider = SegmenterProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
