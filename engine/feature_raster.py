"""The feature-raster contract: C Float32 bands on a grid of ``stride`` x ``stride`` pixel cells, NaN where a
cell has no valid pixel, described by SEGMENTER_* metadata (``FeatureMeta``).

A segmentation writes one (a FEATURES output, a scratch GeoTIFF, or a MEM dataset when it fits the budget) and
reads it back for the label pass; knn_refine reads the FEATURES of an earlier run; a REFERENCE label raster carries
the ``FeatureMeta`` of the run that made it, which a new run must match.
"""

import os

import numpy as np
from osgeo import gdal

from .metadata import write_metadata
from .raster_io import AtomicRaster, read_window, scaled_geotransform
from .windows import Window

# Tiles 16 cells tall: a window writes (and the label pass reads) whole tiles but for the two it shares with its
# neighbours. With 256-cell tiles, every window of a wide raster rewrote a whole row of 1.8 MB tiles (3x slower
# at 1 GPix).
STRIP_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=16", "BIGTIFF=IF_SAFER"]
TILE_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"]


class _MemoryDataset:
    """The embeddings in a GDAL MEM dataset, with the ``AtomicRaster`` calls a run makes on its features."""

    def __init__(self, width, height, bands):
        self.dataset = gdal.GetDriverByName("MEM").Create("", width, height, bands, gdal.GDT_Float32)
        self.group = None

    def band(self, index=1):
        return self.dataset.GetRasterBand(index)

    def checked(self, operation, *arguments):
        return operation(*arguments)

    def release_cache(self):
        pass

    def commit(self):
        raise AssertionError("a feature raster in memory is never committed")

    def abort(self):
        self.dataset = None


class FeatureRaster:
    """A feature raster being written by a segmentation run: cells by ``Window`` on the cell grid in, and read
    back by the label pass through ``dataset``.

    ``create`` makes it where the run wants it: the FEATURES destination (committed with the run's outputs), a
    scratch GeoTIFF in ``scratch`` (removed), or, with ``in_memory``, a MEM dataset."""

    def __init__(self, target, grid, channels):
        self.target, self.grid, self.channels = target, grid, channels

    @classmethod
    def create(cls, raster, stride, channels, options, path=None, group=None, scratch=None, in_memory=False):
        grid = Window.whole(raster.width, raster.height).on_grid(stride)
        if in_memory:
            return cls(_MemoryDataset(grid.width, grid.height, channels), grid, channels)
        target = AtomicRaster(
            path or os.path.join(scratch, "features.tif"), grid.width, grid.height, channels, gdal.GDT_Float32,
            scaled_geotransform(raster.geotransform, stride), raster.projection, options,
            gcps_from=raster.dataset, gcp_scale=stride, group=group if path else None,
            name=None if path else "the scratch feature raster")
        return cls(target, grid, channels)

    @property
    def dataset(self):
        return self.target.dataset

    def write(self, cells, values):
        """``values`` (C, rows, cols) float32 at the cells of ``cells`` (a Window on the cell grid)."""
        bands, rows, cols = values.shape
        self.target.checked(self.target.dataset.WriteRaster, cells.xoff, cells.yoff, cols, rows,
                            np.ascontiguousarray(values, np.float32).tobytes(), cols, rows, gdal.GDT_Float32,
                            list(range(1, bands + 1)))

    def read(self, cells):
        """The features (C, rows, cols) of the cells of ``cells``."""
        return read_window(self.dataset, *cells.box)

    def release_cache(self):
        self.target.release_cache()

    def tag(self, meta):
        """Band names, NaN nodata and SEGMENTER_* metadata (``meta``: a ``FeatureMeta``)."""
        for index, name in enumerate(meta.names, start=1):
            self.target.band(index).SetDescription(name)
            self.target.band(index).SetNoDataValue(float("nan"))
        write_metadata(self.dataset, **meta.as_dict())
        self.release_cache()

    def finish(self, keep):
        """Commit the FEATURES output (``keep``), or give up the scratch or in-memory features."""
        if keep:
            self.target.commit()
        else:
            self.target.abort()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None or isinstance(self.target, _MemoryDataset):
            self.target.abort()
        return False
