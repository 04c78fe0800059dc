"""Shared test set-up: the plugin importable as ``map_segmenter``, headless QGIS, real sample rasters."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / ".build" / "plugins"
PLUGINS.mkdir(parents=True, exist_ok=True)
if not (PLUGINS / "map_segmenter").exists():
    (PLUGINS / "map_segmenter").symlink_to(ROOT, target_is_directory=True)
sys.path.insert(0, str(PLUGINS))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QGIS_PLUGINPATH", str(PLUGINS))
os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", str(ROOT / ".build" / "qgis-profile"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import KAMPALA, crop_real  # noqa: E402


@pytest.fixture(scope="session")
def kampala_crop(tmp_path_factory):
    """A real 517 x 389 px crop of the Kampala mosaic: sizes that are multiples of nothing useful."""
    return crop_real(KAMPALA, tmp_path_factory.mktemp("real") / "kampala_crop.tif", 517, 389, 1201, 803)


@pytest.fixture(autouse=True, scope="session")
def collect_qgis_garbage_before_exit(qgis_app):
    """Free cyclic garbage that holds QGIS objects (layers, exceptions in tracebacks) while QGIS still runs:
    collected after pytest-qgis's exitQgis(), they crash the interpreter on its way out."""
    yield
    import gc

    gc.collect()


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
