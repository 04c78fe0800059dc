"""The ONNX embedding-model contract shared by the runtime (engine) and the exporter (training).

Input ``rgb``: float32 [N, 3, H, W], H and W dynamic (multiples of the stride). Output ``embeddings``:
float32 [N, C, H/stride, W/stride]. ``metadata_props`` hold JSON-encoded values under the keys below;
``model_type``, ``tile_size`` and ``resolution`` follow the Deepness/GeoDeep convention.
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
OPTIONAL_KEYS = ("resolution", "name", "description", "licence")


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
