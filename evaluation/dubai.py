"""The labelled Dubai tiles: images, masks and the scoring protocol of data/SOURCES.md."""

from pathlib import Path

import numpy as np
from PIL import Image

DUBAI = Path(__file__).resolve().parents[1] / "data" / "dubai_hitl"
CLASS_COLOURS = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41)]
IGNORE_COLOURS = [(155, 155, 155), (0, 0, 0)]


def pairs(root=DUBAI):
    for image in sorted((Path(root) / "images").glob("*.jpg")):
        yield image, Path(root) / "masks" / (image.stem + ".png")


def load_classes(mask_path):
    """Class index per pixel (0..4) and an ignore mask; unknown colours are ignored too."""
    rgb = np.asarray(Image.open(mask_path).convert("RGB")).astype(np.int32)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    classes = np.full(code.shape, -1, np.int64)
    for index, (r, g, b) in enumerate(CLASS_COLOURS):
        classes[code == ((r << 16) | (g << 8) | b)] = index
    return classes, classes < 0
