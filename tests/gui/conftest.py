"""GUI tests run QGIS's own dialogs offscreen with pytest-qgis's stand-in for the QGIS main window (iface)."""

import pytest


@pytest.fixture(autouse=True)
def desktop_iface(qgis_iface, monkeypatch):
    """pytest-qgis's iface answers browserModel() with a mock, which Processing's parameter panel cannot take
    (a desktop without a browser panel answers None), and its iconSize() lacks the default the Modeler relies on."""
    from qgis.PyQt.QtCore import QSize

    monkeypatch.setattr(qgis_iface, "browserModel", lambda: None, raising=False)
    monkeypatch.setattr(qgis_iface, "iconSize", lambda docked_toolbar=False: QSize(24, 24), raising=False)
    # pytest-qgis answers layerTreeView() with a mock, which QGIS >= 3.44 hands to C++ (addResultLayers) when
    # loading results: the desktop's layers panel, a real view of the project's layer tree, instead.
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: _layers_panel(), raising=False)
    return qgis_iface


_PANEL = []


def _layers_panel():
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeView

    if not _PANEL:
        view = QgsLayerTreeView()
        view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), view))
        _PANEL.append(view)
    return _PANEL[0]


@pytest.fixture(autouse=True)
def no_task_outlives_its_test(qgis_app):
    """A dialog's background task still running when its test ends would run on into the next test, over objects
    already freed (QGIS aborts the process): every test ends with QGIS's task manager idle."""
    import time

    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication

    yield
    manager, deadline = QgsApplication.taskManager(), time.monotonic() + 120
    while manager.countActiveTasks() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert not manager.countActiveTasks(), "a background task was still running 120 s after the test"


@pytest.fixture(autouse=True)
def exceptions_in_qt_slots_fail_the_test(monkeypatch):
    """PyQt aborts the whole process (qFatal) on an exception raised in Python code that Qt or QGIS calls back
    (slots, overridden virtuals such as a dialog's result handling) unless sys.excepthook is set; the desktop sets
    one. Here such an exception fails the test that raised it, with its traceback, and the suite goes on."""
    import sys
    import traceback

    raised = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: raised.append("".join(traceback.format_exception(*info))))
    yield
    assert not raised, "an exception was raised in a Qt callback:\n" + "\n".join(raised)
