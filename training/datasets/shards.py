"""Read shards written by build_shards: random crops of tiles with their precomputed SLIC labels."""

import json
from pathlib import Path

import numpy as np
from osgeo import gdal

from .build_shards import INDEX


def read_index(root):
    path = Path(root) / INDEX
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build shards first (python -m training.datasets.build_shards)")
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


class ShardSource:
    """Tiles of one split, minus the Dubai tiles in ``holdout``; ``sample`` returns a random crop (uint8
    (3, s, s)), its SLIC (s, s) and a name, and with ``classes`` also the Dubai class ids of the crop (int64
    (s, s), -1 = unlabelled or ignored)."""

    def __init__(self, root, split="train", cache=True, classes=False, holdout=()):
        from .rasters import dubai_tile

        self.root = Path(root)
        # tiles held out by the run's config stay out even when the shards were built with another split
        self.entries = [e for e in read_index(root) if e["split"] == split and dubai_tile(e["source"]) not in holdout]
        if not self.entries:
            raise ValueError(f"no tiles in split {split!r} of {self.root / INDEX}")
        self.cache = {} if cache else None
        self.classes = classes
        self.masks = {}

    def class_crop(self, entry, x, y, size):
        """Class ids of a crop from the source image's Dubai mask (the evaluation package's colours); -1 elsewhere."""
        source = entry["source"]
        if source not in self.masks:
            from .rasters import DATA

            mask = DATA / "dubai_hitl" / "masks" / (Path(source).stem + ".png")
            if mask.exists():
                from map_segmenter.evaluation.dubai import load_classes  # the Dubai protocol's colours

                classes, ignore = load_classes(mask)
                classes[ignore] = -1
                self.masks[source] = classes
            else:
                self.masks[source] = None
        classes = self.masks[source]
        if classes is None:
            return np.full((size, size), -1, np.int64)
        top, left = entry["y"] + y, entry["x"] + x
        return classes[top : top + size, left : left + size]

    def __len__(self):
        return len(self.entries)

    def load(self, index):
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        entry = self.entries[index]
        pixels = gdal.Open(str(self.root / entry["tile"])).ReadAsArray().astype(np.uint8)
        slic = np.load(self.root / entry["slic"])
        if self.cache is not None:
            self.cache[index] = (pixels, slic)
        return pixels, slic

    def sample(self, rng, size):
        index = int(rng.integers(len(self.entries)))
        pixels, slic = self.load(index)
        h, w = slic.shape
        if size > min(h, w):
            raise ValueError(f"patch size {size} px exceeds the {w} x {h} px shard tiles")
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = slic[y : y + size, x : x + size]
        name = f"{self.entries[index]['id']}:{x},{y}"
        if self.classes:
            return pixels[:, y : y + size, x : x + size], crop, name, self.class_crop(self.entries[index], x, y, size)
        return pixels[:, y : y + size, x : x + size], crop, name
