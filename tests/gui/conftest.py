"""GUI tests run QGIS's own dialogs offscreen with pytest-qgis's stand-in for the QGIS main window (iface)."""

import pytest


@pytest.fixture(autouse=True)
def desktop_iface(qgis_iface, monkeypatch):
    """pytest-qgis's iface answers browserModel() with a mock, which Processing's parameter panel cannot take
    (a desktop without a browser panel answers None), and its iconSize() lacks the default the Modeler relies on."""
    from qgis.PyQt.QtCore import QSize

    monkeypatch.setattr(qgis_iface, "browserModel", lambda: None, raising=False)
    monkeypatch.setattr(qgis_iface, "iconSize", lambda docked_toolbar=False: QSize(24, 24), raising=False)
    return qgis_iface
