"""Imports without path hacks: the checkout is the installed package ``map_segmenter`` (pyproject.toml maps the
root to it; scripts/setup.sh runs ``pip install -e .``), so any process of this Python imports it, wherever it
runs, and no code outside the tests edits sys.path or makes links to import it."""

import importlib.util
import re
import subprocess
import sys

import pytest

from helpers import ROOT

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")

SKIP = {".build", ".venv", ".git", "tests", "bench/out", "dist", "build"}


def _python_files():
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if not any(str(relative).startswith(prefix + "/") for prefix in SKIP):
            yield path, relative


def test_a_fresh_process_anywhere_imports_the_package_from_this_checkout(tmp_path):
    code = ("import sys, map_segmenter, map_segmenter.engine.segmentation.cnn_segmentation, "
            "map_segmenter.evaluation.scoring; "
            "print(map_segmenter.__file__); print('qgis' in sys.modules, 'torch' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                               timeout=120, check=True)
    location, heavy = completed.stdout.split("\n")[:2]
    assert location == str(ROOT / "__init__.py")
    assert heavy == "False False"  # the engine and the evaluation package import neither QGIS nor torch


def test_no_sys_path_edits_or_import_links_outside_the_tests():
    edits, links = [], []
    for path, relative in _python_files():
        text = path.read_text()
        edits += [f"{relative}: {line.strip()}" for line in text.splitlines()
                  if re.search(r"sys\.path\s*(\.\s*(insert|append|extend)|\[|\+?=)", line)]
        if "symlink_to" in text or "os.symlink" in text:
            links.append(str(relative))
    assert not edits, edits
    assert not links, links


def test_every_python_package_of_the_checkout_is_declared():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"map_segmenter"} | {
        "map_segmenter." + str(relative.parent).replace("/", ".")
        for path, relative in _python_files() if path.name == "__init__.py" and str(relative.parent) != "."
    }
    assert found == declared


def _pytest_in_a_subprocess(*arguments):
    code = ("import sys, pytest; code = pytest.main(sys.argv[1:]); "
            "print('RESULT', int(code), 'qgis.core' in sys.modules, 'pytest_qgis.plugin' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code, "-p", "no:cacheprovider", *arguments], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    return completed.stdout


def test_engine_tests_run_without_starting_or_importing_qgis():
    out = _pytest_in_a_subprocess("-q", "-m", "not qgis", "tests/engine/test_windows.py")
    assert out.splitlines()[-1] == "RESULT 0 False False", out
    out = _pytest_in_a_subprocess("-q", "tests/engine/test_windows.py")  # a path without qgis tests: the same
    assert out.splitlines()[-1] == "RESULT 0 False False", out


@pytest.mark.slow  # collects the whole suite twice (about 8 s)
def test_markers_follow_the_folders():
    out = _pytest_in_a_subprocess("-q", "--collect-only", "-m", "not qgis and not torch")
    collected = [line for line in out.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/engine/") for line in collected), collected[:5]
    assert any(line.startswith("tests/engine/test_pixel_identity.py") for line in collected)
    out = _pytest_in_a_subprocess("-q", "--collect-only", "-m", "torch", "tests/training", "tests/engine")
    collected = [line for line in out.splitlines() if "::" in line]
    assert all(line.startswith("tests/training/") for line in collected), collected[:5]
    if importlib.util.find_spec("torch") is not None:
        assert collected, out
    else:  # Python 3.13 in Debian 13 (scripts/test_on_qgis.sh): every training module skips, saying why
        skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
        assert skipped and all("tests/training/" in line and "torch is not installed" in line for line in skipped), out


def test_engine_modules_import_one_way():
    """The engine's sub-packages are layers, bottom first (``layers``): a module imports from its own sub-package and
    from those below it, never from one above; the engine imports none of the plugin's other packages; engine/ holds
    no module besides its __init__.py (a new module goes into the sub-package of its concern); no import circle
    among the modules; and no engine import hidden inside a function to break one (raster_io and labels once
    imported each other that way)."""
    import ast
    import importlib.util

    layers = ["runtime", "rasters", "backends", "segmentation", "steps"]  # bottom first
    spec = importlib.util.spec_from_file_location("qt6_scan", ROOT / "scripts" / "qt6_scan.py")
    qt6_scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qt6_scan)  # its parse() copes with CPython 3.11.2's spurious SystemError

    engine = ROOT / "engine"
    assert sorted(path.name for path in engine.glob("*.py")) == ["__init__.py"], "engine/*.py: into a sub-package"
    found = sorted(path.parent.name for path in engine.glob("*/__init__.py"))
    assert found == sorted(layers), f"engine sub-packages {found}: each has its place in layers, bottom first"
    rank = {name: index for index, name in enumerate(layers)}
    modules = {f"{path.parent.name}.{path.stem}": path
               for name in layers for path in (engine / name).glob("*.py")}
    graph, hidden, upward, outside = {}, [], [], []
    for name, path in modules.items():
        package = name.split(".")[0]
        tree = qt6_scan.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ["engine", package][:3 - node.level] if node.level <= 2 else None
                module = node.module
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "map_segmenter":
                parts = node.module.split(".")
                base = ["engine"] if parts[1:2] == ["engine"] else None
                module = ".".join(parts[2:])
            else:
                continue
            if base is None:
                outside.append(f"{name}: line {node.lineno} imports from outside the engine")
                continue
            targets = [[*base, *module.split(".")]] if module else [[*base, alias.name] for alias in node.names]
            if id(node) not in top_level:
                hidden.append(f"{name}: line {node.lineno} imports from the engine inside a function")
            for target in targets:
                if len(target) < 2 or target[1] not in rank:
                    continue  # the engine's own __init__ (VERSION)
                if rank[target[1]] > rank[package]:
                    upward.append(f"{name} imports {'.'.join(target[1:])}: {target[1]} is above {package}")
                dependency = ".".join(target[1:3])
                dependency = dependency if dependency in modules else f"{target[1]}.__init__"
                if dependency in modules and dependency != name:
                    graph[name].add(dependency)
    assert not outside, outside
    assert not upward, upward
    assert not hidden, hidden
    state = {}

    def visit(name, path):
        state[name] = "open"
        for dependency in sorted(graph[name]):
            assert state.get(dependency) != "open", f"import circle: {' -> '.join([*path, dependency])}"
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
