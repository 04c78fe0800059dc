"""Algorithms run inside a real QGIS: pytest-qgis starts QgsApplication, we start Processing and our provider."""

import pytest

_PROVIDERS = []


@pytest.fixture(scope="session")
def processing_run(qgis_app):
    """``processing.run`` with the Map Segmenter provider registered (as QGIS does when loading the plugin)."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsApplication

    from map_segmenter.processing_provider.provider import SegmenterProvider

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    _PROVIDERS.append(SegmenterProvider())  # Python keeps the provider alive; QGIS only borrows it
    assert registry.addProvider(_PROVIDERS[-1])
    return processing.run
