"""Shared test set-up: the plugin installed as ``map_segmenter`` from this checkout, QGIS only when needed, real
rasters.

``tests/`` is on sys.path (pyproject's ``pythonpath``) for ``helpers``; ``map_segmenter`` comes from
``pip install -e .`` (scripts/setup.sh), which also links the checkout where QGIS and qgis_process find plugins.

Markers (registered in pyproject.toml), given here by folder: ``qgis`` for tests/algorithms, tests/gui and tests/cli
(a QgsApplication in the test process, or qgis_process), ``torch`` for tests/training; ``slow`` is set per test.
pytest-qgis is not auto-loaded (``-p no:pytest_qgis``): it is registered, and so QGIS started, only when the run
can select a ``qgis`` test, so ``pytest -m "not qgis"`` or ``pytest tests/engine`` never starts (or imports) QGIS.
"""

import itertools
import os
import re
from pathlib import Path

import pytest

from helpers import KAMPALA, PLUGINS, ROOT, crop_real

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"algorithms": "qgis", "gui": "qgis", "cli": "qgis", "training": "torch"}

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


def pytest_addoption(parser):
    # pytest-qgis's ini key, declared here too so that runs without QGIS do not warn about it
    parser.addini("qgis_gui_enabled", "Set whether the graphical user interface is wanted or not.", type="bool",
                  default=True)


def _expression_allows_qgis(markexpr):
    """Whether a test marked ``qgis`` (and perhaps other markers) can match the ``-m`` expression."""
    if not markexpr:
        return True
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
        names = sorted(set(re.findall(r"[A-Za-z_][\w]*", markexpr)) - {"and", "or", "not", "qgis"})
        for count in range(len(names) + 1):
            for others in itertools.combinations(names, count):
                chosen = {"qgis", *others}
                if expression.evaluate(lambda name, chosen=chosen, **kwargs: name in chosen):
                    return True
        return False
    except Exception:  # an expression this cannot read: start QGIS, as if nothing were deselected
        return True


def _paths_may_hold_qgis_tests(config):
    """Whether any path given on the command line (or testpaths) is, or contains, a folder of ``qgis`` tests."""
    qgis_folders = [TESTS / name for name, marker in FOLDER_MARKERS.items() if marker == "qgis"]
    base = config.rootpath if config.args_source == pytest.Config.ArgsSource.TESTPATHS else \
        config.invocation_params.dir
    for argument in config.args:
        path = Path(base, argument.split("::")[0]).resolve()
        if any(path == folder or folder in path.parents or path in folder.parents for folder in qgis_folders):
            return True
    return False


def wants_qgis(config):
    return _expression_allows_qgis(config.option.markexpr) and _paths_may_hold_qgis_tests(config)


def pytest_configure(config):
    config.qgis_started = False
    if wants_qgis(config):
        link = PLUGINS / "map_segmenter"
        if not link.exists() or link.resolve() != ROOT:
            pytest.exit(f"QGIS and qgis_process find the plugin through {link}, which does not lead to this checkout: "
                        f"run `bash scripts/setup.sh`.", returncode=4)
        from pytest_qgis import plugin

        config.pluginmanager.register(plugin, "pytest_qgis_when_needed")
        config.qgis_started = True


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[parts[0]])


@pytest.fixture(scope="session")
def kampala_crop(tmp_path_factory):
    """A real 517 x 389 px crop of the Kampala mosaic: sizes that are multiples of nothing useful."""
    return crop_real(KAMPALA, tmp_path_factory.mktemp("real") / "kampala_crop.tif", 517, 389, 1201, 803)


@pytest.fixture(autouse=True, scope="session")
def collect_qgis_garbage_before_exit(request):
    """Free cyclic garbage that holds QGIS objects (layers, exceptions in tracebacks) while QGIS still runs:
    collected after pytest-qgis's exitQgis(), they crash the interpreter on its way out."""
    if not request.config.qgis_started:
        yield
        return
    request.getfixturevalue("qgis_app")  # set up first, so torn down after this
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


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A real Dask scheduler and two worker processes on localhost for the whole session (started only when a test
    asks for it; about 3 s): the runs on it are compared with runs in the test process."""
    from helpers import DaskProcesses

    processes = DaskProcesses(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield processes
    finally:
        processes.close()
