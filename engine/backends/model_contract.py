"""The ONNX embedding-model contract shared by the runtime (engine) and the exporter (training).

Input ``rgb``: float32 [N, 3, H, W], H and W dynamic (multiples of the stride). Output ``embeddings``:
float32 [N, C, H/stride, W/stride]. ``metadata_props`` hold JSON-encoded values under the keys below;
``model_type``, ``tile_size`` and ``resolution`` follow the Deepness/GeoDeep convention.

Embeddings are compared with the Euclidean distance (K-Means); a model that wants cosine similarity
normalises its output inside the graph. An embedding may depend only on the pixels within
``receptive_field`` px of its own stride x stride cell: no layer may pool over the whole input
(GroupNorm, InstanceNorm, global pooling), or tiled inference could not equal untiled inference.

A network whose embeddings depend on the whole input (global attention: ViTs) says so with ``global_context``
true. It has no finite receptive field: ``receptive_field`` is then the overlap, in px on each side, over which
neighbouring tiles' embeddings are blended (engine/segmentation/blended_tiles.py), and results depend on the tile size.
"""

import json

INPUT_NAME = "rgb"
OUTPUT_NAME = "embeddings"
MODEL_TYPE = "embedding"

REQUIRED_KEYS = (
    "model_type",  # "embedding" (Deepness/GeoDeep key)
    "stride",  # int, output cell size in input pixels
    "embed_dim",  # int, C
    "receptive_field",  # int, px: the halo tiled inference needs for seam-free output
    "input_scale",  # float: pixels (0..255) are multiplied by this first
    "input_mean",  # [3] floats, subtracted after scaling
    "input_std",  # [3] floats, divided after subtracting
    "tile_size",  # int, recommended tile size in px (Deepness/GeoDeep key)
    "version",  # str
    "training",  # dict: data, steps, date, notes (or "untrained")
)
OPTIONAL_KEYS = (
    "resolution",  # cm/px the model was trained at (Deepness/GeoDeep key)
    "name",
    "description",
    "licence",
    "flops_per_pixel",  # float: multiply-adds x 2 per input pixel (for benchmarks)
    "global_context",  # bool: embeddings depend on the whole tile (no finite receptive field); default false
    "source",  # str: where the architecture comes from, e.g. "timm:resnet50" (training/export_backbone.py)
    "layer",  # str: the network's layer the embeddings are taken from
    "weights",  # dict: the weights file, its sha256, or {"random": true}
    "positional_embedding",  # dict: a ViT's trained patch grid (interpolated in the graph to each tile's)
    "pca",  # dict: a fixed PCA stored in the graph (components, channels, rasters, explained_variance)
)


def encode_metadata(values):
    """Dict of metadata_props (str -> str) from Python values."""
    return {key: json.dumps(value) for key, value in values.items()}


def decode_metadata(props):
    """Python values from metadata_props; values that are not JSON stay strings."""
    decoded = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_metadata(values):
    """Problems (plain sentences) with decoded metadata ``values``; an empty list when they conform."""
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        return [f"metadata_props lacks {', '.join(missing)}"]
    problems = []
    if values["model_type"] != MODEL_TYPE:
        problems.append(f"model_type is {values['model_type']!r}, not {MODEL_TYPE!r}")
    for key, low in (("stride", 1), ("embed_dim", 1), ("receptive_field", 0), ("tile_size", 1)):
        if not _is_int(values[key]) or values[key] < low:
            problems.append(f"{key} must be an integer >= {low}, not {values[key]!r}")
    if not _is_number(values["input_scale"]) or values["input_scale"] <= 0:
        problems.append(f"input_scale must be a positive number, not {values['input_scale']!r}")
    for key in ("input_mean", "input_std"):
        value = values[key]
        if not (isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)):
            problems.append(f"{key} must be a list of 3 numbers, not {value!r}")
        elif key == "input_std" and min(value) <= 0:
            problems.append(f"input_std must be positive, not {value!r}")
    if not isinstance(values.get("global_context", False), bool):
        problems.append(f"global_context must be true or false, not {values['global_context']!r}")
    return problems


def has_random_weights(values):
    """Whether decoded metadata say the network's weights are random (exported for tests and benchmarks)."""
    weights = values.get("weights")
    return isinstance(weights, dict) and weights.get("random") is True
