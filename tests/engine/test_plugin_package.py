"""The plugin zip as plugins.qgis.org receives it: scripts/build_zip.py builds it, scripts/check_package.py checks
it as the repository would (structure, metadata, Bandit, detect-secrets, flake8-qgis), and every check is shown
to fail, with a precise message, on a violation planted in a copy of the zip."""

import configparser
import importlib.util
import shutil
import zipfile
from xml.sax.saxutils import quoteattr

import pytest
import tomllib

from map_segmenter.engine.rasters.labels import xml_attribute

from helpers import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_zip = _script("build_zip")
check_package = _script("check_package")
PACKAGE = "map_segmenter"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_zip.build(dist=tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def unpacked(package, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    return folder


def repack(unpacked, tmp_path, edit=None, modes=None, extra_tops=()):
    """A copy of the zip with ``edit(plugin_folder)`` applied: returns the new zip's path."""
    source = tmp_path / "copy"
    shutil.copytree(unpacked, source)
    if edit:
        edit(source / PACKAGE)
    for name in extra_tops:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("not the plugin\n")
    target = tmp_path / "dist" / f"{PACKAGE}-{build_zip.version()}.zip"
    target.parent.mkdir()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            name = file.relative_to(source).as_posix()
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | (modes or {}).get(name, 0o644)) << 16
            archive.writestr(info, file.read_bytes())
    return target


def errors(findings):
    return [str(finding) for finding in findings if finding.blocking]


def plant(relative, content):
    def edit(plugin):
        path = plugin / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return edit


@pytest.mark.slow  # Bandit, detect-secrets and flake8 (twice) over the whole plugin: 5-15 s on 2 busy cores
def test_the_built_zip_passes_every_check(package):
    findings = check_package.check_package(package, pyproject=ROOT / "pyproject.toml")
    assert errors(findings) == []


def test_the_zip_holds_the_plugin_and_only_what_qgis_runs(package):
    with zipfile.ZipFile(package) as archive:
        infos = archive.infolist()
    names = {info.filename for info in infos}
    assert package.stat().st_size < 25_000_000
    assert {name.split("/")[0] for name in names} == {PACKAGE}
    source = {f"{PACKAGE}/{path.relative_to(ROOT).as_posix()}"
              for folder in ("engine", "algorithms", "processing_provider") for path in (ROOT / folder).rglob("*.py")
              if "__pycache__" not in path.parts}
    assert source <= names
    for shipped in ("metadata.txt", "__init__.py", "LICENSE", "icon.svg", "onnx_models/student_s4_v1.onnx",
                    "i18n/map_segmenter_de.qm", "processing_provider/models"):
        assert any(name.startswith(f"{PACKAGE}/{shipped}") for name in names), shipped
    for left_out in ("tests", "training", "evaluation", "bench", "data", "docs", "scripts", "dist"):
        assert not any(name.startswith(f"{PACKAGE}/{left_out}/") for name in names), left_out
    assert not [name for name in names if "/." in name or "__pycache__" in name or name.endswith((".pyc", ".pyo"))]
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_the_builder_leaves_out_caches_and_hidden_files(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    for name in build_zip.INCLUDE:
        source = ROOT / name
        (shutil.copy2 if source.is_file() else shutil.copytree)(source, root / name)
    (root / "engine" / "__pycache__").mkdir(exist_ok=True)
    (root / "engine" / "__pycache__" / "kmeans.cpython-311.pyc").write_bytes(b"\x00")
    (root / "engine" / "old.pyc").write_bytes(b"\x00")
    (root / "engine" / ".DS_Store").write_bytes(b"\x00")
    (root / "engine" / ".kmeans.py.swp").write_bytes(b"\x00")
    (root / "engine" / "kmeans.py~").write_text("backup")
    (root / "engine" / "segmentation" / "kmeans.py").chmod(0o755)
    package = build_zip.build(dist=tmp_path / "dist", root=root)
    findings = check_package.check_package(package, only={"structure"})
    assert errors(findings) == []
    with zipfile.ZipFile(package) as archive:
        assert f"{PACKAGE}/engine/segmentation/kmeans.py" in archive.namelist()
        assert archive.getinfo(f"{PACKAGE}/engine/segmentation/kmeans.py").external_attr >> 16 == 0o100644


def test_metadata_is_complete_and_versions_agree(package):
    assert errors(check_package.check_package(package, pyproject=ROOT / "pyproject.toml", only={"metadata"})) == []
    metadata = configparser.ConfigParser()
    metadata.optionxform = str
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    for field in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository",
                  "tracker", "homepage"):
        assert general.get(field, "").strip(), field
    for field in ("homepage", "repository", "tracker"):
        assert general[field].startswith("https://"), field
    version = general["version"]
    assert general["changelog"].strip().split("\n")[0].strip() == version
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == version


@pytest.mark.parametrize(("edit", "message"), [
    (plant("engine/segmentation/kmeans.cpython-311.pyc", b"\x00"),
     "engine/segmentation/kmeans.cpython-311.pyc: the repository refuses any "
                                                      "name containing .pyc"),
    (plant("engine/__pycache__/kmeans.py", "x = 1\n"), "engine/__pycache__/kmeans.py: a __pycache__ folder"),
    (plant("engine/.DS_Store", b"\x00"), "engine/.DS_Store: a hidden file or folder (.DS_Store)"),
    (plant(".bandit", "[bandit]\n"), f"{PACKAGE}/.bandit: a hidden file or folder (.bandit)"),
    (plant("engine/_fast.so", b"\x7fELF"), "engine/_fast.so: a compiled file (.so)"),
    (plant("engine/_fast.pyd", b"MZ"), "engine/_fast.pyd: a compiled file (.pyd)"),
    (plant("lib/helper.dll", b"MZ"), "lib/helper.dll: a compiled file (.dll)"),
    (plant("lib/helper.dylib", b"\xcf\xfa"), "lib/helper.dylib: a compiled file (.dylib)"),
    (plant("bin/tool.exe", b"MZ"), "bin/tool.exe: a compiled file (.exe)"),
    (plant("bin/install.sh", "echo\n"), "bin/install.sh: a .sh script"),
    (lambda plugin: (plugin / "LICENSE").unlink(), f"{PACKAGE}/LICENSE is missing"),
])
def test_structure_violations_are_reported(unpacked, tmp_path, edit, message):
    findings = check_package.check_package(repack(unpacked, tmp_path, edit), only={"structure"})
    assert any(message in error for error in errors(findings)), errors(findings)


def test_a_second_top_folder_an_executable_file_and_the_size_limit_are_reported(unpacked, tmp_path, monkeypatch):
    package = repack(unpacked, tmp_path, modes={f"{PACKAGE}/engine/segmentation/kmeans.py": 0o755},
                     extra_tops=["extra/a.txt"])
    monkeypatch.setattr(check_package, "MAX_BYTES", 1000)
    found = "\n".join(errors(check_package.check_package(package, only={"structure"})))
    assert f"the zip must hold one top folder {PACKAGE}/ and nothing beside it; it holds extra, {PACKAGE}" in found
    assert f"{PACKAGE}/engine/segmentation/kmeans.py: stored executable (mode 755)" in found
    assert f"bytes: the plugin repository refuses more than {1000:,}" in found


def _metadata_edit(pattern, replacement):
    def edit(plugin):
        path = plugin / "metadata.txt"
        text = path.read_text(encoding="utf-8")
        assert pattern in text
        path.write_text(text.replace(pattern, replacement, 1), encoding="utf-8")

    return edit


VERSION = build_zip.version()


@pytest.mark.parametrize(("edit", "message"), [
    (_metadata_edit(f"changelog={VERSION}", "changelog=0.1.9"),
     f"metadata.txt version={VERSION} but the changelog's first entry is 0.1.9"),
    (_metadata_edit("\ntracker=", "\nbugs="), "metadata.txt has no tracker (required by the repository)"),
    (_metadata_edit("\nabout=", "\nabout=\nold_about="), "metadata.txt has no about (required by the repository)"),
    (_metadata_edit("homepage=https://", "homepage=http://"), "homepage=http://github.com/map-segmenter/map-segmenter "
                                                              "is not an https:// URL"),
    (_metadata_edit("repository=https://github.com", "repository=https://example.com"),
     "repository=https://example.com/map-segmenter/map-segmenter is a placeholder"),
    (_metadata_edit("\nauthor=", "\nauthor=Team A/Team B and "), "author contains a slash"),
    (_metadata_edit("without labels", "without labels (100 %)"), "metadata.txt cannot be read as the repository "
                                                                   "reads it"),
])
def test_metadata_violations_are_reported(unpacked, tmp_path, edit, message):
    findings = check_package.check_package(repack(unpacked, tmp_path, edit), only={"metadata"})
    assert any(message in error for error in errors(findings)), errors(findings)


def test_a_pyproject_of_another_version_is_reported(package, tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "map-segmenter"\nversion = "9.9.9"\n')
    found = errors(check_package.check_package(package, pyproject=pyproject, only={"metadata"}))
    assert found == [f"ERROR [metadata] metadata.txt version={VERSION} but pyproject.toml has version 9.9.9"]


PLANTED_CODE = '''import subprocess


def run(command):
    return subprocess.call(command, shell=True)


def evaluate(text):
    return eval(text)


def quiet(text):
    return eval(text)  # nosec


def unexplained(text):
    return eval(text)  # nosec B307


# B307 does not apply here: nothing is evaluated (a stale exception)
ANSWER = 42  # nosec B307
'''


@pytest.mark.slow  # Bandit twice over the whole plugin: 2-5 s on 2 busy cores
def test_bandit_findings_and_unjustified_or_stale_exceptions_are_reported(unpacked, tmp_path):
    def edit(plugin):
        plant("engine/planted.py", PLANTED_CODE)(plugin)
        plant("engine/.bandit", "[bandit]\n; B101: asserts are fine\nskips = B101\n")(plugin)

    found = "\n".join(errors(check_package.check_package(repack(unpacked, tmp_path, edit), only={"bandit"})))
    where = f"{PACKAGE}/engine/planted.py"
    assert f"{where}:5 B602 (high severity): subprocess call with shell=True identified" in found
    assert f"{where}:9 B307 (medium severity): Use of possibly insecure function - consider using safer " in found
    assert f"{where}:13 has a bare '# nosec': name the test it excepts" in found
    assert f"{where}:17 '# nosec B307' has no justification" in found
    assert f"{where}:21 '# nosec B307' suppresses nothing: remove it" in found
    assert (f"{PACKAGE}/engine/.bandit skips B101: plugins.qgis.org runs bandit -t with its own tests, and Bandit "
            f"then stops with 'Non-exclusive include/exclude test sets'") in found
    assert "statistics.py" not in found  # the shipped exceptions (# nosec B608) are justified and needed


@pytest.mark.slow  # detect-secrets over the whole plugin: 2-6 s on 2 busy cores
def test_secrets_are_reported(unpacked, tmp_path):
    key = "AKIA" + "J7QZ4M2XK9TP3VWB"  # an AWS access key id's shape, made here so no file of the repository has one
    package = repack(unpacked, tmp_path, plant("engine/settings.py", f'"""Settings."""\n\nKEY_ID = "{key}"\n'))
    found = errors(check_package.check_package(package, only={"secrets"}))
    assert found == [f"ERROR [secrets] {PACKAGE}/engine/settings.py:3 AWS Access Key: remove it (a real secret must "
                     f"be revoked too)"]


@pytest.mark.slow  # flake8 twice over the whole plugin: 3-6 s on 2 busy cores
def test_qgis_lint_findings_are_reported(unpacked, tmp_path):
    code = "from PyQt5.QtCore import pyqtSignal\n\n\ndef start(iface):\n    return iface, pyqtSignal\n"
    found = "\n".join(errors(check_package.check_package(repack(unpacked, tmp_path, plant("engine/ui.py", code)),
                                                         only={"qgis-lint"})))
    assert f"{PACKAGE}/engine/ui.py:1:1: QGS103 Use 'from qgis.PyQt.QtCore import pyqtSignal' instead of" in found
    assert f"{PACKAGE}/engine/ui.py:4:1: QGS105 Do not pass iface (QgisInterface) as an argument" in found
    assert "processing_provider/plugin.py" not in found  # its QGS105 is the documented plugin entry point


@pytest.mark.parametrize("text", ["Segment 1", 'say "hi"', "it's", "both \" and '", "a & b < c > d", "tab\there",
                                  "new\nline\r", "Ünïcödé €", "", "&amp; already", "'\"'"])
def test_xml_attributes_are_written_as_quoteattr_writes_them(text):
    assert xml_attribute(text) == quoteattr(text)
