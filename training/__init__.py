"""Offline PyTorch code (training, export to ONNX, evaluation). Never imported by the plugin.

Part of the installed package (``map_segmenter.training``; ``pip install -e .``, which scripts/setup.sh runs):
``python -m training.train`` from the repository root and ``python -m map_segmenter.training.train`` from
anywhere run the same code, and both reach the engine's shared contracts as ``map_segmenter.engine``.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
