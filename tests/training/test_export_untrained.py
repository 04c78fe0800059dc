"""training/export_untrained.py builds training/models.Student: rebuilding the test model gives the committed
tests/models/student_s4_untrained.onnx again (same graph, bit-identical weights; only the date in its metadata
moves)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0 (training only)")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from onnx import numpy_helper  # noqa: E402

from map_segmenter.training import export_untrained  # noqa: E402
from map_segmenter.training.models import Student  # noqa: E402

from helpers import ROOT  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

COMMITTED = ROOT / "tests" / "models" / "student_s4_untrained.onnx"


def test_it_uses_the_training_student_not_a_copy_of_it():
    assert export_untrained.Student is Student
    assert not [name for name in vars(export_untrained) if name in ("ResidualBlock", "conv_bn", "conv_layers")]


def test_rebuilding_gives_the_committed_test_model(tmp_path):
    path = export_untrained.export(tmp_path, "student_s4_untrained", stem=32, width=64, embed_dim=32, blocks=3,
                                   tile_size=512, seed=0)
    built, committed = onnx.load(str(path)), onnx.load(str(COMMITTED))
    assert [(n.op_type, list(n.input), list(n.output)) for n in built.graph.node] == \
        [(n.op_type, list(n.input), list(n.output)) for n in committed.graph.node]
    weights = {w.name: numpy_helper.to_array(w) for w in committed.graph.initializer}
    for initializer in built.graph.initializer:
        assert np.array_equal(numpy_helper.to_array(initializer), weights.pop(initializer.name)), initializer.name
    assert not weights
    meta = {p.key: json.loads(p.value) for p in built.metadata_props}
    committed_meta = {p.key: json.loads(p.value) for p in committed.metadata_props}
    for values in (meta, committed_meta):
        values["training"].pop("date")
    assert meta == committed_meta
