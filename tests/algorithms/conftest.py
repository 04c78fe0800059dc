"""Algorithms run inside a real QGIS: pytest-qgis starts QgsApplication, we start Processing and our provider."""

import pytest


@pytest.fixture(scope="session")
def processing_run(qgis_app):
    """``processing.run`` with the Map Segmenter provider registered (as QGIS does when loading the plugin)."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsApplication

    from map_segmenter.processing_provider.provider import SegmenterProvider

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    provider = SegmenterProvider()
    assert registry.addProvider(provider)
    yield processing.run
    registry.removeProvider(provider)
