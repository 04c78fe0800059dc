"""Build the installable plugin zip: dist/map_segmenter-<version>.zip with a top-level map_segmenter/ folder.

    python scripts/build_zip.py

Install it in QGIS with Plugins > Manage and Install Plugins > Install from ZIP.
"""

import configparser
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ["metadata.txt", "__init__.py", "icon.svg", "LICENSE", "README.md", "processing_provider", "algorithms",
           "engine", "onnx_models", "i18n"]


def build():
    config = configparser.ConfigParser()
    config.read(ROOT / "metadata.txt")
    version = config["general"]["version"]
    target = ROOT / "dist" / f"map_segmenter-{version}.zip"
    target.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in INCLUDE:
            path = ROOT / name
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                if "__pycache__" in file.parts or file.suffix == ".pyc":
                    continue
                archive.write(file, Path("map_segmenter") / file.relative_to(ROOT))
    return target


if __name__ == "__main__":
    print(build())
