"""Shared test set-up: the plugin installed as ``map_segmenter`` from this checkout, headless QGIS, real rasters.

``tests/`` is on sys.path (pyproject's ``pythonpath``) for ``helpers``; ``map_segmenter`` comes from
``pip install -e .`` (scripts/setup.sh), which also links the checkout where QGIS and qgis_process find plugins.
"""

import os
from pathlib import Path

import pytest

from helpers import KAMPALA, PLUGINS, ROOT, crop_real

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QGIS_PLUGINPATH", str(PLUGINS))
os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", str(ROOT / ".build" / "qgis-profile"))


def _installed_here():
    """Stop at once, saying what to run, when ``map_segmenter`` is not this checkout: the tests would test
    another copy of the code (a venv shared with another checkout) or fail on every import."""
    try:
        import map_segmenter
    except ImportError:
        return "map_segmenter is not installed in this Python. Run `bash scripts/setup.sh` (pip install -e .)."
    where = Path(map_segmenter.__file__).resolve().parent
    if where != ROOT:
        return (f"map_segmenter is imported from {where}, not from this checkout {ROOT}. Run "
                f"`python -m pip install --no-deps --no-build-isolation -e {ROOT}` in this venv (or use a venv of "
                f"its own).")
    return None


_PROBLEM = _installed_here()
if _PROBLEM:
    pytest.exit(_PROBLEM, returncode=4)


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
