"""Ready for QGIS 4 (Qt 6): no Qt 5-only or QGIS 3-only construct anywhere in the repository (scripts/qt6_scan.py,
which reads the files' syntax trees: no QGIS needed), and the scan itself catches each construct it claims to."""

import configparser
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("qt6_scan", ROOT / "scripts" / "qt6_scan.py")
qt6_scan = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(qt6_scan)

# (code, the rule it must break); the finding is expected on the code's last line
BANNED = [
    ("from PyQt5.QtCore import Qt", "pyqt-import"),
    ("import PyQt5.QtWidgets", "pyqt-import"),
    ("from PyQt6.QtGui import QIcon", "pyqt-import"),
    ("import sip", "pyqt-import"),
    ("from PyQt5 import sip", "pyqt-import"),
    ("from qgis.PyQt.Qt import Qt", "pyqt-import"),
    ("from qgis.PyQt.QtWidgets import QAction", "moved-to-qtgui"),
    ("from qgis.PyQt.QtWidgets import QDialog, QShortcut", "moved-to-qtgui"),
    ("from qgis.PyQt.QtWidgets import QActionGroup", "moved-to-qtgui"),
    ("from qgis.PyQt.QtWidgets import QFileSystemModel", "moved-to-qtgui"),
    ("from qgis.PyQt.QtWidgets import QUndoStack", "moved-to-qtgui"),
    ("action = QtWidgets.QAction(parent)", "moved-to-qtgui"),
    ("from qgis.PyQt.QtCore import QRegExp", "removed-class"),
    ("pattern = QRegExp('a+')", "removed-class"),
    ("geometry = QApplication.desktop().screenGeometry()", "removed-class"),
    ("widget = QDesktopWidget()", "removed-class"),
    ("from qgis.PyQt import QtWebKit", "removed-module"),
    ("from . import resources_rc", "compiled-resources"),
    ("dialog.exec_()", "exec_"),
    ("QApplication.exec_()", "exec_"),
    ("class Dialog:\n    def exec_(self): pass", "exec_"),
    ("document.print_(printer)", "print_"),
    ("width = QFontMetrics(font).width('text')", "fontmetrics-width"),
    ("width = label.fontMetrics().width('text')", "fontmetrics-width"),
    ("metrics = QFontMetricsF(font)\nwidth = metrics.width('text')", "fontmetrics-width"),
    ("value = QVariant()", "qvariant"),
    ("value = QVariant(QVariant.Int)", "qvariant"),
    ("kind = QVariant.Type.Int", "qvariant"),
    ("field = QgsField('name', QVariant.String)", "unscoped-qt-enum"),
    ("label.setAlignment(Qt.AlignLeft | Qt.AlignTop)", "unscoped-qt-enum"),
    ("painter.setPen(Qt.red)", "unscoped-qt-enum"),
    ("item.setData(Qt.UserRole, 1)", "unscoped-qt-enum"),
    ("answer = QMessageBox.question(None, 'a', 'b', QMessageBox.Yes | QMessageBox.No)", "unscoped-qt-enum"),
    ("policy = QSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)", "unscoped-qt-enum"),
    ("image = QImage(4, 4, QImage.Format_ARGB32)", "unscoped-qt-enum"),
    ("accepted = dialog.exec() == QDialog.Accepted", "unscoped-qt-enum"),
    ("flag = QtCore.Qt.AlignLeft", "unscoped-qt-enum"),
    ("button = Qt.MidButton", "renamed-enum"),
    ("qApp.processEvents()", "qapp"),
    ("combo.activated[str].connect(slot)", "activated-str"),
    ("when = QDateTime(2024, 1, 2, 3, 4, 5, 0)", "qdatetime"),
    ("menu.addAction(icon, 'Text', receiver, shortcut)", "addaction"),
    ("parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)", "moved-qgis-enum"),
    ("source = QgsProcessingParameterFeatureSource('IN', 'In', [QgsProcessing.TypeVectorPolygon])",
     "moved-qgis-enum"),
    ("kind = QgsProcessing.SourceType.TypeVectorPolygon", "moved-qgis-enum"),
    ("def flags(self):\n    return super().flags() | QgsProcessingAlgorithm.FlagNoThreading", "moved-qgis-enum"),
    ("kind = QgsProcessingParameterNumber.Integer", "moved-qgis-enum"),
    ("kind = QgsProcessingParameterNumber.Double", "moved-qgis-enum"),
    ("behavior = QgsProcessingParameterFile.Folder", "moved-qgis-enum"),
    ("kind = QgsProcessingParameterField.Numeric", "moved-qgis-enum"),
    ("features = source.getFeatures(request, QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks)",
     "moved-qgis-enum"),
    ("polygons = layer.geometryType() == QgsWkbTypes.PolygonGeometry", "moved-qgis-enum"),
    ("wkb = QgsWkbTypes.MultiPolygon", "moved-qgis-enum"),
    ("raster = layer.type() == QgsMapLayer.RasterLayer", "moved-qgis-enum"),
    ("wkt = crs.toWkt(crs.WKT_PREFERRED_GDAL)", "moved-qgis-enum"),
    ("feedback.reportError('x', Qgis.Critical)", "unscoped-qgis-enum"),
    ("log('x', level=Qgis.Warning)", "unscoped-qgis-enum"),
    ("kind = Qgis.Float32", "unscoped-qgis-enum"),
    ("settings.setFlag(QgsMapSettings.Antialiasing, True)", "unscoped-qgis-enum"),
    ("sink.addFeature(feature, QgsFeatureSink.FastInsert)", "unscoped-qgis-enum"),
]

# the same things written the way that runs on QGIS 3.22 and on QGIS 4
SCOPED = """
from qgis.core import NULL, Qgis, QgsProcessingContext, QgsProcessingParameterNumber, QgsRasterLayer
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QDate, QDateTime, QMetaType, QRegularExpression, Qt, QTime
from qgis.PyQt.QtGui import QFontMetrics, QImage
from qgis.PyQt.QtWidgets import QApplication, QDialog, QMessageBox, QSizePolicy

from map_segmenter.algorithms.qgis_compat import CrsWktVariant, ProcessingParameterFlag, ProcessingSourceType

try:  # QtGui on Qt 6 and on QGIS >= 3.34; QtWidgets before
    from qgis.PyQt.QtGui import QAction, QShortcut
except ImportError:
    from qgis.PyQt.QtWidgets import QAction, QShortcut

pattern = QRegularExpression("a+")
label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
painter.setPen(Qt.GlobalColor.red)
item.setData(Qt.ItemDataRole.UserRole, 1)
buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
image = QImage(4, 4, QImage.Format.Format_ARGB32)
if dialog.exec() == QDialog.DialogCode.Accepted:
    QApplication.instance().processEvents()
document.print(printer)
width = QFontMetrics(font).horizontalAdvance("text")
value = NULL
kind = QMetaType.Type.Int
button = Qt.MouseButton.MiddleButton
combo.textActivated.connect(slot)
when = QDateTime(QDate(2024, 1, 2), QTime(3, 4, 5))
menu.addAction(QAction(icon, "Text", parent))
shortcut = QShortcut(parent)
feedback.reportError("x", Qgis.MessageLevel.Critical)
kind = Qgis.DataType.Float32
settings.setFlag(Qgis.MapSettingsFlag.Antialiasing, True)
parameter.setFlags(parameter.flags() | ProcessingParameterFlag.Advanced)
source = ProcessingSourceType.VectorPolygon
number = QgsProcessingParameterNumber("N", "n", Qgis.ProcessingNumberParameterType.Integer)
wkt = crs.toWkt(CrsWktVariant.PreferredGdal)
options = QgsRasterLayer.LayerOptions()
details = QgsProcessingContext.LayerDetails("name", project, "name")
version = Qgis.QGIS_VERSION_INT
text = QCoreApplication.translate("context", "text")
deleted = sip.isdeleted(widget)
width = widget.width()
"""


@pytest.mark.parametrize(("code", "rule"), BANNED, ids=[f"{rule}:{code[:40]}" for code, rule in BANNED])
def test_each_banned_construct_is_reported_on_its_line(code, rule):
    findings = qt6_scan.check_source(code, "snippet.py")
    line = code.count("\n") + 1
    assert rule in {finding.rule for finding in findings if finding.line == line}, findings


def test_every_rule_has_a_snippet():
    rules = {rule for _, rule in BANNED}
    assert {"pyqt-import", "moved-to-qtgui", "removed-class", "exec_", "print_", "fontmetrics-width", "qvariant",
            "unscoped-qt-enum", "unscoped-qgis-enum", "moved-qgis-enum", "renamed-enum", "qapp"} <= rules


def test_scoped_equivalents_are_not_reported():
    assert qt6_scan.check_source(SCOPED, "snippet.py") == []


def test_old_qgis_names_are_allowed_only_in_the_compat_module():
    code = "value = QgsProcessing.TypeVectorPolygon\n"
    assert [f.rule for f in qt6_scan.check_source(code, "algorithms/other.py")] == ["moved-qgis-enum"]
    assert qt6_scan.check_source(code, qt6_scan.COMPAT_MODULE) == []


def test_a_qtwidgets_import_is_allowed_only_as_the_import_error_fallback():
    fallback = ("try:\n    from qgis.PyQt.QtGui import QAction\n"
                "except ImportError:\n    from qgis.PyQt.QtWidgets import QAction\n")
    other = fallback.replace("ImportError", "ValueError")
    assert qt6_scan.check_source(fallback) == []
    assert [(f.line, f.rule) for f in qt6_scan.check_source(other)] == [(4, "moved-to-qtgui")]


def test_the_scan_names_file_and_line_and_skips_hidden_and_build_folders(tmp_path):
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "dialog.py").write_text("import os\n\n\ndialog.exec_()\n")
    for skipped in (".venv", ".build", ".git", "__pycache__", "dist"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "old.py").write_text("dialog.exec_()\n")
    findings = [str(finding) for finding in qt6_scan.scan(tmp_path)]
    assert len(findings) == 1 and findings[0].startswith("package/dialog.py:4: [exec_] ")
    assert qt6_scan.main([str(tmp_path)]) == 1


def test_the_repository_is_ready_for_qt6():
    """Every *.py of the plugin, its tests, scripts, benchmarks, training and docs."""
    files = qt6_scan.python_files(ROOT)
    assert {"__init__.py", "algorithms/base.py", "processing_provider/plugin.py", "scripts/build_model.py",
            "tests/gui/test_desktop.py", "tests/engine/test_qt6_ready.py"} <= set(files)
    assert not any(path.startswith((".venv/", ".build/", ".git/")) for path in files)
    findings = qt6_scan.scan(ROOT)
    assert not findings, "Qt 5 / QGIS 3-only constructs (README: Ready for QGIS 4):\n" + "\n".join(map(str, findings))


def test_metadata_lists_the_plugin_for_qgis_4():
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["qgisMinimumVersion"] == "3.22" and general["qgisMaximumVersion"] == "4.99"
    keys = list(general)
    assert keys.index("qgismaximumversion") == keys.index("qgisminimumversion") + 1
    # ignored by QGIS 4 and plugins.qgis.org, still read by the plugin manager of Qt 6 builds of QGIS 3.x
    assert general.getboolean("supportsQt6")
