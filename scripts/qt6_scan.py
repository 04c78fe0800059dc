"""Find Qt 5-only and QGIS 3-only constructs that break the plugin on QGIS 4 (Qt 6, PyQt6), file:line each.

    python scripts/qt6_scan.py [FOLDER]     # default: the repository; exit status 1 when anything is found

Reads the Python files only (ast, no Qt or QGIS needed). tests/engine/test_qt6_ready.py runs it over the whole
repository (plugin, tests, scripts, bench, training, docs: every *.py outside hidden folders and build output) and
feeds it one snippet per rule. The rules follow QGIS's own migration script (scripts/pyqt5_to_pyqt6 in the QGIS
repository) and the plugin migration notes; every finding's fix also works on QGIS 3.22 (PyQt5 5.15 takes the
scoped forms too). QGIS enums that moved into ``Qgis`` are only allowed in ``COMPAT_MODULE``.
"""

import ast
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPAT_MODULE = "algorithms/qgis_compat.py"
SKIP_FOLDERS = {"__pycache__", "build", "dist", "out"}  # and every folder whose name starts with "."

QT_CLASS = re.compile(r"^(Qt|Q[A-Z]\w*)$")  # Qt, QMessageBox, ...; not the modules QtCore, QtWidgets, ...
QGIS_CLASS = re.compile(r"^(Qgis|Qgs[A-Z]\w*)$")
QT_MODULE = re.compile(r"^(Qt[A-Z]\w*|Qsci)$")
CONSTANT = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")  # Qgis.QGIS_VERSION_INT: a constant, not an enum member
GLOBAL_COLORS = {"color0", "color1", "black", "white", "darkGray", "gray", "lightGray", "red", "green", "blue", "cyan",
                 "magenta", "yellow", "darkRed", "darkGreen", "darkBlue", "darkCyan", "darkMagenta", "darkYellow",
                 "transparent"}

# classes that live in QtGui in Qt 6 (QtWidgets in Qt 5); qgis.PyQt.QtGui has QAction and QShortcut on Qt 5 too
# since QGIS 3.34, so an import from QtWidgets is allowed only as the fallback in an ``except ImportError:``
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QFileSystemModel", "QUndoCommand", "QUndoGroup",
                  "QUndoStack"}
REMOVED_CLASSES = {
    "QRegExp": "QRegExp is removed in Qt 6: use QRegularExpression",
    "QRegExpValidator": "QRegExpValidator is removed in Qt 6: use QRegularExpressionValidator",
    "QDesktopWidget": "QDesktopWidget is removed in Qt 6: use QScreen (QWidget.screen(), "
                      "QGuiApplication.primaryScreen())",
    "QMatrix": "QMatrix is removed in Qt 6: use QTransform",
    "QTextCodec": "QTextCodec is not in Qt 6's QtCore: use Python's str.encode / bytes.decode",
    "QGLWidget": "QGLWidget is removed in Qt 6: use QOpenGLWidget",
}
REMOVED_MODULES = {"QtWebKit", "QtWebKitWidgets", "QtScript", "QtXmlPatterns"}
RENAMED_MEMBERS = {"MidButton": "Qt.MouseButton.MiddleButton", "TextColorRole": "Qt.ItemDataRole.ForegroundRole",
                   "BackgroundColorRole": "Qt.ItemDataRole.BackgroundRole",
                   "HighQualityAntialiasing": "QPainter.RenderHint.Antialiasing"}

# QGIS enums that moved into Qgis (3.30 / 3.36) and lose their old spelling in QGIS 4, by class:
# {class: [(old enum, old member names, new enum in Qgis), ...]}
MOVED_QGIS_ENUMS = {
    "QgsProcessing": [("SourceType", r"Type[A-Z]\w*", "ProcessingSourceType")],
    "QgsProcessingParameterDefinition": [("Flag", r"Flag[A-Z]\w*", "ProcessingParameterFlag")],
    "QgsProcessingAlgorithm": [("Flag", r"Flag[A-Z]\w*", "ProcessingAlgorithmFlag")],
    "QgsProcessingFeatureSource": [("Flag", r"Flag[A-Z]\w*", "ProcessingFeatureSourceFlag")],
    "QgsProcessingParameterNumber": [("Type", r"Integer|Double", "ProcessingNumberParameterType")],
    "QgsProcessingParameterFile": [("Behavior", r"File|Folder", "ProcessingFileParameterBehavior")],
    "QgsProcessingParameterField": [("DataType", r"Any|Numeric|String|DateTime|Binary|Boolean",
                                     "ProcessingFieldParameterDataType")],
    "QgsProcessingParameterDateTime": [("Type", r"DateTime|Date|Time", "ProcessingDateTimeParameterDataType")],
    "QgsProcessingContext": [("LogLevel", r"DefaultLevel|Verbose|ModelDebug", "ProcessingLogLevel")],
    "QgsWkbTypes": [("GeometryType", r"(Point|Line|Polygon|Unknown|Null)Geometry", "GeometryType"),
                    ("Type", r"[A-Z]\w*", "WkbType")],
    "QgsMapLayer": [("LayerType", r"[A-Z]\w*Layer", "LayerType")],
    "QgsCoordinateReferenceSystem": [("WktVariant", r"WKT\w*", "CrsWktVariant")],
    "QgsUnitTypes": [(f"{unit}Unit", rf"{unit}[A-Z]\w*", f"{unit}Unit") for unit in ("Distance", "Area", "Render")],
}
MOVED_ANYWHERE = re.compile(r"^WKT(1|2)?_[A-Z0-9_]+$")  # crs.WKT_PREFERRED_GDAL: refused on any object

# where an unscoped member most likely belongs (only to make the message concrete)
HINTS = [
    ("Qt", r"Align\w+", "AlignmentFlag"), ("Qt", r"Key_\w+", "Key"), ("Qt", r"WA_\w+", "WidgetAttribute"),
    ("Qt", r"\w+Role", "ItemDataRole"), ("Qt", "|".join(sorted(GLOBAL_COLORS)), "GlobalColor"),
    ("Qt", r"Horizontal|Vertical", "Orientation"), ("Qt", r"(Un|PartiallyC|C)hecked", "CheckState"),
    ("Qt", r"Item(Is|Never)\w+|NoItemFlags", "ItemFlag"), ("Qt", r"\w+Cursor", "CursorShape"),
    ("Qt", r"(Ascending|Descending)Order", "SortOrder"), ("Qt", r"\w+Button", "MouseButton"),
    ("Qt", r"\w+Modifier", "KeyboardModifier"), ("Qt", r"\w+(Window)?Hint|Window|Dialog|Tool|Popup", "WindowType"),
    ("Qt", r"(Ignore|Keep|KeepByExpanding)AspectRatio\w*", "AspectRatioMode"),
    ("Qt", r"(Fast|Smooth)Transformation", "TransformationMode"), ("Qt", r"\w+Pattern", "BrushStyle"),
    ("Qt", r"\w+Line", "PenStyle"), ("Qt", r"ISODate\w*|TextDate|RFC2822Date", "DateFormat"),
    ("QMessageBox|QDialogButtonBox", r"Ok|Open|Save|Cancel|Close|Discard|Apply|Reset|RestoreDefaults|Help|SaveAll|"
     r"Yes|YesToAll|No|NoToAll|Abort|Retry|Ignore|NoButton", "StandardButton"),
    ("QMessageBox", r"NoIcon|Question|Information|Warning|Critical", "Icon"),
    ("QSizePolicy", r"Fixed|Minimum|Maximum|Preferred|Expanding|MinimumExpanding|Ignored", "Policy"),
    ("QImage", r"Format_\w+", "Format"), ("QDialog", r"Accepted|Rejected", "DialogCode"),
    ("QPainter", r"\w*Antialiasing|SmoothPixmapTransform|LosslessImageRendering", "RenderHint"),
    ("QPainter", r"CompositionMode_\w+", "CompositionMode"), ("QFont", r"Thin|Light|Normal|Medium|DemiBold|Bold|Black|"
                                                              r"ExtraLight|ExtraBold", "Weight"),
    ("QEvent", r"[A-Z]\w*", "Type"), ("QFrame", r"NoFrame|Box|Panel|StyledPanel|HLine|VLine|WinPanel", "Shape"),
    ("QFrame", r"Plain|Raised|Sunken", "Shadow"), ("QAbstractItemView", r"\w+Selection", "SelectionMode"),
    ("QHeaderView", r"Interactive|Stretch|Fixed|ResizeToContents|Custom", "ResizeMode"),
    ("QVariant", r"[A-Z]\w*", None), ("QgsMapSettings", r"[A-Z]\w*", "Qgis.MapSettingsFlag"),
    ("Qgis", r"Info|Warning|Critical|Success|NoLevel", "MessageLevel"),
    ("Qgis", r"Byte|U?Int(16|32)|Float(32|64)|C(Int|Float)(16|32|64)|ARGB32\w*|UnknownDataType|Int8", "DataType"),
]


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self):
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


def _hint(owner, member):
    for owners, members, enum in HINTS:
        if re.fullmatch(owners, owner) and re.fullmatch(members, member):
            if enum is None:  # QVariant.Int
                return (f"use QMetaType.Type.{member} where QGIS >= 3.38 takes it; resolve it in {COMPAT_MODULE} "
                        f"for QGIS 3.22")
            if enum.startswith("Qgis."):
                return f"write {enum}.{member}"
            return f"write {owner}.{enum}.{member}"
    return f"write it through its enum: {owner}.<Enum>.{member}"


def _in_import_error_handler(node, parents):
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            if any(isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError") for name in names):
                return True
    return False


class _Checker(ast.NodeVisitor):
    def __init__(self, path, tree):
        self.path = path
        self.compat = path == COMPAT_MODULE
        self.findings = []
        self.parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        self.font_metrics = set()  # names bound to QFontMetrics(...) / widget.fontMetrics()

    def report(self, node, rule, message):
        self.findings.append(Finding(self.path, node.lineno, rule, message))

    # -- imports -------------------------------------------------------------------------------------------------

    def visit_Import(self, node):  # noqa: N802 - ast.NodeVisitor
        for alias in node.names:
            self.check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):  # noqa: N802 - ast.NodeVisitor
        module = node.module or ""
        self.check_module(node, module)
        names = [alias.name for alias in node.names]
        if module in ("qgis.PyQt", "PyQt5", "PyQt6"):
            for name in names:
                self.check_module(node, f"{module}.{name}")
        if module.endswith("QtWidgets"):
            for name in sorted(MOVED_TO_QTGUI.intersection(names)):
                if not _in_import_error_handler(node, self.parents):
                    self.report(node, "moved-to-qtgui", f"{name} is in QtGui in Qt 6: import it from qgis.PyQt.QtGui "
                                "(QtWidgets only as the `except ImportError:` fallback for QGIS < 3.34)")
        for name in names:
            if name in REMOVED_CLASSES:
                self.report(node, "removed-class", REMOVED_CLASSES[name])
            if name == "resources_rc" or module.split(".")[-1] == "resources_rc":
                self.report(node, "compiled-resources", "compiled resources (pyrcc) are gone in PyQt6: load icons "
                            "and .ui files by path")
        self.generic_visit(node)

    def check_module(self, node, module):
        top = module.split(".")[0]
        if top in ("PyQt5", "PyQt6", "sip"):
            self.report(node, "pyqt-import", f"import {module}: import Qt through qgis.PyQt "
                        "(qgis.PyQt.QtCore, ..., qgis.PyQt.sip)")
        elif module == "qgis.PyQt.Qt":
            self.report(node, "pyqt-import", "qgis.PyQt.Qt is gone in Qt 6: import Qt from qgis.PyQt.QtCore")
        if module.split(".")[-1] in REMOVED_MODULES:
            self.report(node, "removed-module", f"{module.split('.')[-1]} does not exist in Qt 6")
        if module.split(".")[-1] == "resources_rc":
            self.report(node, "compiled-resources", "compiled resources (pyrcc) are gone in PyQt6: load icons and "
                        ".ui files by path")

    # -- names, attributes, calls ---------------------------------------------------------------------------------

    def visit_Name(self, node):  # noqa: N802 - ast.NodeVisitor
        if isinstance(node.ctx, ast.Load):
            if node.id == "qApp":
                self.report(node, "qapp", "qApp is gone in PyQt6: use QApplication.instance()")
            elif node.id in REMOVED_CLASSES:
                self.report(node, "removed-class", REMOVED_CLASSES[node.id])
        self.generic_visit(node)

    def visit_FunctionDef(self, node):  # noqa: N802 - ast.NodeVisitor
        if node.name == "exec_":
            self.report(node, "exec_", "define exec(), not exec_() (PyQt6 has only exec)")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - ast.NodeVisitor

    def visit_Assign(self, node):  # noqa: N802 - ast.NodeVisitor
        if self.is_font_metrics(node.value):
            self.font_metrics.update(target.id for target in node.targets if isinstance(target, ast.Name))
        self.generic_visit(node)

    def is_font_metrics(self, node):
        if isinstance(node, ast.Call):
            function = node.func
            return (isinstance(function, ast.Name) and function.id in ("QFontMetrics", "QFontMetricsF")) or \
                (isinstance(function, ast.Attribute) and function.attr == "fontMetrics")
        return isinstance(node, ast.Name) and node.id in self.font_metrics

    def visit_Call(self, node):  # noqa: N802 - ast.NodeVisitor
        function = node.func
        if isinstance(function, ast.Attribute):
            if function.attr == "exec_":
                self.report(node, "exec_", "call exec(), not exec_() (PyQt6 has only exec; PyQt5 5.15 has both)")
            elif function.attr == "print_":
                self.report(node, "print_", "call print(), not print_() (PyQt6 has only print)")
            elif function.attr == "desktop" and not node.args:
                self.report(node, "removed-class", REMOVED_CLASSES["QDesktopWidget"] + " (QApplication.desktop())")
            elif function.attr == "width" and self.is_font_metrics(function.value):
                self.report(node, "fontmetrics-width", "QFontMetrics.width() is removed in Qt 6: use "
                            "horizontalAdvance()")
            elif function.attr == "addAction" and len(node.args) >= 4:
                self.report(node, "addaction", "addAction(icon, text, receiver, shortcut) changed in Qt 6: create "
                            "the QAction, then addAction(action)")
        elif isinstance(function, ast.Name):
            if function.id == "QVariant" and (not node.args or (
                    len(node.args) == 1 and isinstance(node.args[0], ast.Attribute)
                    and isinstance(node.args[0].value, ast.Name) and node.args[0].value.id == "QVariant")):
                self.report(node, "qvariant", "a null QVariant does not exist in PyQt6: use qgis.core.NULL (or None)")
            elif function.id == "QDateTime" and len(node.args) >= 7:
                self.report(node, "qdatetime", "QDateTime(y, m, d, h, min, s, ...) is gone in PyQt6: use "
                            "QDateTime(QDate(y, m, d), QTime(h, min, s))")
        self.generic_visit(node)

    def visit_Subscript(self, node):  # noqa: N802 - ast.NodeVisitor
        if isinstance(node.value, ast.Attribute) and node.value.attr == "activated" and \
                isinstance(node.slice, ast.Name) and node.slice.id == "str":
            self.report(node, "activated-str", "activated[str] is gone in Qt 6: use textActivated")
        self.generic_visit(node)

    def visit_Attribute(self, node):  # noqa: N802 - ast.NodeVisitor
        self.check_attribute(node)
        self.generic_visit(node)

    def check_attribute(self, node):
        parent = self.parents.get(node)
        member = node.attr
        if member in RENAMED_MEMBERS:
            return self.report(node, "renamed-enum", f"{member} is gone in Qt 6: write {RENAMED_MEMBERS[member]}")
        if MOVED_ANYWHERE.match(member) and not self.compat:
            return self.report(node, "moved-qgis-enum", f"{member} moved to Qgis.CrsWktVariant: use "
                               f"{COMPAT_MODULE}")
        owner_node = node.value
        if isinstance(owner_node, ast.Attribute) and isinstance(owner_node.value, ast.Name) and \
                QT_MODULE.match(owner_node.value.id):  # QtCore.Qt.AlignLeft, QtWidgets.QAction
            owner = owner_node.attr
        elif isinstance(owner_node, ast.Name):
            owner = owner_node.id
            if QT_MODULE.match(owner):
                if owner == "QtWidgets" and member in MOVED_TO_QTGUI:
                    self.report(node, "moved-to-qtgui", f"{member} is in QtGui in Qt 6: use QtGui.{member}")
                return None
        else:
            return None
        if owner == "QVariant" and member == "Type":
            return self.report(node, "qvariant", "QVariant.Type does not exist in PyQt6: use QMetaType.Type "
                               f"(resolved in {COMPAT_MODULE} while QGIS 3.22 is supported)")
        if not self.compat:
            for enum, members, new in MOVED_QGIS_ENUMS.get(owner, ()):
                if member == enum or re.fullmatch(members, member):
                    return self.report(node, "moved-qgis-enum", f"{owner}.{member} moved to Qgis.{new} in QGIS "
                                       f"3.30/3.36 and is gone in QGIS 4: use {COMPAT_MODULE}")
        if not (QT_CLASS.match(owner) or QGIS_CLASS.match(owner)) or (self.compat and QGIS_CLASS.match(owner)):
            return None
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return None  # Qt.AlignmentFlag.AlignLeft: scoped (or a nested class's attribute)
        if isinstance(parent, ast.Call) and parent.func is node:
            return None  # QgsRasterLayer.LayerOptions(): a nested class or a static method
        enum_like = (member[0].isupper() and not CONSTANT.match(member)) or \
            (owner == "Qt" and member in GLOBAL_COLORS)
        if enum_like:
            rule = "unscoped-qgis-enum" if QGIS_CLASS.match(owner) else "unscoped-qt-enum"
            self.report(node, rule, f"{owner}.{member} is unscoped: PyQt6 only has enum members through their "
                        f"enum; {_hint(owner, member)}")
        return None


def parse(source, filename="<unknown>"):
    """``ast.parse``, again in a fresh thread when CPython 3.11.2-3.11.4 (Debian 12's is 3.11.2) raises its spurious
    "AST constructor recursion depth mismatch" (python/cpython#106905), seen when called deep in a test run's stack."""
    try:
        return ast.parse(source, filename=filename)
    except SystemError:
        import threading

        result = []
        thread = threading.Thread(target=lambda: result.append(ast.parse(source, filename=filename)))
        thread.start()
        thread.join()
        if not result:
            raise
        return result[0]


def check_source(source, path="<snippet>"):
    """Findings in ``source`` (the text of a Python file); ``path`` is its path relative to the repository."""
    try:
        tree = parse(source, filename=path)
    except SyntaxError as error:
        return [Finding(path, error.lineno or 0, "syntax", f"cannot parse: {error.msg}")]
    checker = _Checker(path, tree)
    checker.visit(tree)
    unique = dict.fromkeys(checker.findings)  # one finding per (line, rule, message)
    return sorted(unique, key=lambda finding: (finding.line, finding.rule))


def python_files(root=ROOT):
    """Every *.py under ``root`` outside hidden folders (.venv, .build, .git, ...) and build output, as relative
    POSIX paths, sorted; folder links (.build/plugins/map_segmenter -> the checkout) are not followed."""
    root = Path(root)
    found = []
    for folder, folders, files in os.walk(root):
        folders[:] = [name for name in folders if not name.startswith(".") and name not in SKIP_FOLDERS]
        found += [(Path(folder) / name).relative_to(root).as_posix() for name in files if name.endswith(".py")]
    return sorted(found)


def scan(root=ROOT):
    root = Path(root)
    findings = []
    for path in python_files(root):
        findings += check_source((root / path).read_text(encoding="utf-8"), path)
    return findings


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    findings = scan(argv[0] if argv else ROOT)
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
