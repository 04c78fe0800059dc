"""Build the installable plugin zip: dist/map_segmenter-<version>.zip with a top-level map_segmenter/ folder.

    python scripts/build_zip.py            # then: python scripts/check_package.py dist/map_segmenter-<version>.zip

Install it in QGIS with Plugins > Manage and Install Plugins > Install from ZIP, or upload it to plugins.qgis.org.

Only what QGIS runs is packed: the plugin's code (engine, algorithms, processing_provider), the shipped ONNX
model, translations, icon, metadata, licence and README. Tests, training, evaluation, bench, data, docs and
scripts stay out: the plugin never imports them. Caches and hidden files (__pycache__, *.pyc, .DS_Store, editor
files) are never packed; every file is stored as an ordinary, non-executable file.
"""

import configparser
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "map_segmenter"
INCLUDE = ["metadata.txt", "__init__.py", "icon.svg", "LICENSE", "README.md", "processing_provider", "algorithms",
           "engine", "onnx_models", "i18n"]
CACHE_SUFFIXES = (".pyc", ".pyo")


def version(root=ROOT):
    config = configparser.ConfigParser()
    config.read(Path(root) / "metadata.txt", encoding="utf-8")
    return config["general"]["version"]


def packed_files(root=ROOT):
    """(path on disk, name in the zip) of every file the zip holds, in a fixed order."""
    root = Path(root)
    for name in INCLUDE:
        path = root / name
        if path.is_file():
            files = [path]
        else:
            files = sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            relative = file.relative_to(root)
            if "__pycache__" in relative.parts or file.suffix in CACHE_SUFFIXES:
                continue
            if any(part.startswith(".") or part.endswith("~") for part in relative.parts):  # .DS_Store, .x.swp, x~
                continue
            yield file, f"{PACKAGE}/{relative.as_posix()}"


def build(dist=None, root=ROOT):
    """Write the zip into ``dist`` (default: <root>/dist) and return its path."""
    dist = Path(dist) if dist is not None else Path(root) / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{PACKAGE}-{version(root)}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file, name in packed_files(root):
            info = zipfile.ZipInfo.from_file(file, name)
            info.external_attr = (0o100644 << 16)  # a regular file, rw-r--r--: nothing executable
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
    return target


if __name__ == "__main__":
    print(build())
