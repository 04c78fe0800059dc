"""Real ONNX models for the CNN tests: tiny contract models built with the onnx package, and edited copies of
the shipped model (real files, run by the real ONNX Runtime)."""

from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "tests" / "models" / "student_s4_untrained.onnx"
DEFAULT_MODEL = ROOT / "onnx_models" / "student_s4_v1.onnx"  # segmenter:cnn's default, trained

VALID_METADATA = {
    "model_type": "embedding", "stride": 4, "embed_dim": 3, "receptive_field": 0, "input_scale": 1 / 255,
    "input_mean": [0.5, 0.5, 0.5], "input_std": [0.25, 0.25, 0.25], "tile_size": 64, "version": "test",
    "training": "untrained", "name": "tiny",
}


def tiny_model(path, input_name="rgb", input_shape=("N", 3, "H", "W"), output_name="embeddings", metadata=None,
               drop=(), opset=17):
    """A stride-4 model (4 x 4 average pooling: receptive field 0) with the given interface and metadata."""
    import json

    rank = len(input_shape)
    node = helper.make_node("AveragePool", [input_name], [output_name], kernel_shape=[4] * (rank - 2),
                            strides=[4] * (rank - 2))
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    values = {**VALID_METADATA, **(metadata or {})}
    for key, value in values.items():
        if key not in drop:
            model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))
    return str(path)


def shipped_copy(path, **metadata):
    """The shipped model with some metadata values replaced (same weights, different file and sha256)."""
    import json

    model = onnx.load(str(SHIPPED))
    for prop in model.metadata_props:
        if prop.key in metadata:
            prop.value = json.dumps(metadata[prop.key])
    onnx.save(model, str(path))
    return str(path)

