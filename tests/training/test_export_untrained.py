"""training/export_untrained.py builds training/models.Student: rebuilding the test model gives the committed
tests/models/student_s4_untrained.onnx again (same graph, same shapes, weights equal within float32 rounding: another
CPU's kernels differ in the last bit; only the date in its metadata moves)."""

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


# Another CPU's torch kernels round differently: 16 of 18 initializers were seen 1 ulp apart (up to 2.4e-7). A real
# change of the export (another seed, layer or shape) moves weights by 1e-2 and more.
WEIGHT_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def _differences(built, committed):
    """What differs between two exported models, beyond float32 rounding and the export date: [] when equal."""
    found = []
    if [(n.op_type, list(n.input), list(n.output)) for n in built.graph.node] != \
            [(n.op_type, list(n.input), list(n.output)) for n in committed.graph.node]:
        found.append("graph")
    weights = {w.name: numpy_helper.to_array(w) for w in committed.graph.initializer}
    for initializer in built.graph.initializer:
        mine, theirs = numpy_helper.to_array(initializer), weights.pop(initializer.name, None)
        if theirs is None or mine.shape != theirs.shape or mine.dtype != theirs.dtype:
            found.append(f"{initializer.name}: shape or type")
        elif not np.allclose(mine, theirs, **WEIGHT_TOLERANCE):
            found.append(f"{initializer.name}: values (max difference {np.abs(mine - theirs).max():.3g})")
    found += [f"{name}: missing" for name in weights]
    meta = {p.key: json.loads(p.value) for p in built.metadata_props}
    committed_meta = {p.key: json.loads(p.value) for p in committed.metadata_props}
    for values in (meta, committed_meta):
        values.get("training", {}).pop("date", None)
    if meta != committed_meta:
        found.append("metadata")
    return found


def test_rebuilding_gives_the_committed_test_model(tmp_path):
    path = export_untrained.export(tmp_path, "student_s4_untrained", stem=32, width=64, embed_dim=32, blocks=3,
                                   tile_size=512, seed=0)
    assert _differences(onnx.load(str(path)), onnx.load(str(COMMITTED))) == []


def test_the_comparison_still_sees_another_seed_or_width(tmp_path):
    committed = onnx.load(str(COMMITTED))
    other_seed = export_untrained.export(tmp_path, "seed1", stem=32, width=64, embed_dim=32, blocks=3,
                                         tile_size=512, seed=1)
    found = _differences(onnx.load(str(other_seed)), committed)
    assert any(": values" in item for item in found) and "metadata" in found, found
    wider = export_untrained.export(tmp_path, "wider", stem=32, width=48, embed_dim=32, blocks=3, tile_size=512,
                                    seed=0)
    assert any(": shape or type" in item for item in _differences(onnx.load(str(wider)), committed))
