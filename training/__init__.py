"""Offline PyTorch code (training, export to ONNX, evaluation). Never imported by the plugin.

Importing this package makes the plugin importable as ``map_segmenter`` (the engine's shared contracts and
numerics), whether the code runs as ``python -m training.train`` from the repository root or from tests.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / ".build" / "plugins"


def _plugin_path():
    link = PLUGINS / "map_segmenter"
    if not link.exists():
        PLUGINS.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(ROOT, target_is_directory=True)
        except OSError:
            pass
    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))


_plugin_path()
