"""A post-processing step added in one file (tests/engine/test_window_step.py runs it): segment boundaries with a
halo. It imports only the engine, so a Dask cluster can take the file as it is (``Client.upload_file``)."""

from dataclasses import dataclass

import numpy as np

from map_segmenter.engine.rasters.labels import LabelRaster
from map_segmenter.engine.steps.window_step import WindowStep


@dataclass(frozen=True)
class BoundaryStep(WindowStep):
    """1 where a pixel's id differs from one of its 8 neighbours within ``reach`` px (nodata and edges: no)."""

    path: str
    reach: int = 1
    stage = "Finding boundaries"

    @property
    def halo(self):
        return self.reach

    @property
    def paths(self):
        return (self.path,)

    def open(self):
        return LabelRaster.open(self.path)

    def read(self, labels, window):
        grown = window.grown(self.halo, labels.width, labels.height)
        return grown, labels.read(grown)

    def compute(self, window, grown, ids, tick=None):
        return boundaries(ids, self.reach)[window.yoff - grown.yoff :, window.xoff - grown.xoff :][
            : window.height, : window.width]


def boundaries(ids, reach):
    """The step's numerics on a whole array: the oracle the windowed runs are compared with."""
    edge = np.zeros(ids.shape, np.uint8)
    height, width = ids.shape
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = np.full(ids.shape, -1, np.int64)
            shifted[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] = ids[
                max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)]
            edge |= (shifted >= 0) & (shifted != ids) & (ids > 0)
    return edge
