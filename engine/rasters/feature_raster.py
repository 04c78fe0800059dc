"""The feature-raster contract: C Float32 bands on a grid of ``stride`` x ``stride`` pixel cells, NaN where a
cell has no valid pixel, described by SEGMENTER_* metadata (``FeatureMeta``).

A segmentation writes one (a FEATURES output, a raw scratch file, or a MEM dataset when it fits the budget) and
reads it back for the label pass; knn_refine reads the FEATURES of an earlier run; a REFERENCE label raster carries
the ``FeatureMeta`` of the run that made it, which a new run must match.
"""

import errno
import os

import numpy as np
from osgeo import gdal

from ..runtime import params
from ..runtime.errors import InputError
from ..runtime.outputs import write_failure
from .metadata import FeatureMeta, write_metadata
from .raster_io import AtomicRaster, open_raster, read_window, scaled_geotransform
from .windows import Window

# Tiles 16 cells tall: a window writes (and the label pass reads) whole tiles but for the two it shares with its
# neighbours. With 256-cell tiles, every window of a wide raster rewrote a whole row of 1.8 MB tiles (3x slower
# at 1 GPix).
STRIP_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=16", "BIGTIFF=IF_SAFER"]
TILE_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"]


class _OpenedDataset:
    """A feature raster opened for reading, with the calls a reader makes."""

    def __init__(self, dataset):
        self.dataset = dataset

    def release_cache(self):
        self.dataset.FlushCache()

    def abort(self):
        self.dataset = None


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


class _ScratchFile:
    """Features no FEATURES output keeps: a raw float32 file (band, row, column) written and read by offset
    (unbuffered), so nothing of them stays in the process between windows. One thread reads and writes it.

    A scratch GeoTIFF went through GDAL's block cache, where its blocks, between the input's, left the heap
    fragmented: the 1 GPix kmeans peaked 80 MB above the 25 MPix one (bench/README.md). Giving it up costs a
    delete, where closing a GeoTIFF first filled every tile not yet written. Every cell is written before it is
    read. ``dataset`` is the file itself, with the calls the label pass makes on a GDAL dataset."""

    def __init__(self, path, width, height, bands):
        self.path = path
        self.RasterXSize, self.RasterYSize, self.bands = width, height, bands
        self.band_bytes = width * height * 4
        self.file = open(path, "x+b", buffering=0)  # closed by abort

    @property
    def dataset(self):
        return self

    def _spans(self, xoff, yoff, width, height):
        """(band, first row in the window, rows, offset in the file) of each contiguous run of the window's cells."""
        rows = [(0, height)] if width == self.RasterXSize else [(row, 1) for row in range(height)]
        for band in range(self.bands):
            for first, count in rows:
                yield band, first, count, band * self.band_bytes + ((yoff + first) * self.RasterXSize + xoff) * 4

    def write(self, cells, values):
        values = np.ascontiguousarray(values, np.float32)
        try:
            for band, first, count, offset in self._spans(*cells.box):
                _whole(self.file.write, self.file, values[band, first:first + count], offset)
        except OSError as error:
            raise write_failure([("the scratch feature raster", self.path)], error.strerror or str(error),
                                self.bands * self.band_bytes) from None

    def ReadAsArray(self, xoff, yoff, width, height, buf_type=None):  # noqa: N802 (GDAL's name, for the label pass)
        values = np.empty((self.bands, height, width), np.float32)
        for band, first, count, offset in self._spans(xoff, yoff, width, height):
            _whole(self.file.readinto, self.file, values[band, first:first + count], offset)
        return values

    def FlushCache(self):  # noqa: N802 (GDAL's name)
        pass

    def release_cache(self):
        pass

    def abort(self):
        self.file.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def _whole(transfer, file, array, offset):
    """``transfer`` (the file's write or readinto) all of ``array``'s bytes at ``offset``, however many calls it
    takes."""
    view = memoryview(array).cast("B")
    file.seek(offset)
    while view:
        done = transfer(view)
        if not done:
            raise OSError(errno.EIO, "the file ended early")
        view = view[done:]


class FeatureRaster:
    """A feature raster: written by a segmentation run (``create``) or read by a later step (``open``), cells by
    ``Window`` on its cell grid.

    ``create`` makes it where the run wants it: the FEATURES destination (committed with the run's outputs), a
    raw scratch file in ``scratch`` (removed), or, with ``in_memory``, a MEM dataset; the label pass reads it back
    through ``dataset``."""

    def __init__(self, target, grid, channels, path=None):
        self.target, self.grid, self.channels, self.path = target, grid, channels, path
        self.nodata = [None] * channels  # per band: a declared nodata value other than NaN

    @classmethod
    def open(cls, path, purpose=f"feature raster ({params.FEATURES})"):
        """Open a feature raster written earlier (FEATURES of segmenter:kmeans or segmenter:cnn): float bands."""
        dataset = open_raster(path, purpose=purpose)
        band_types = {dataset.GetRasterBand(i).DataType for i in range(1, dataset.RasterCount + 1)}
        if band_types - {gdal.GDT_Float32, gdal.GDT_Float64}:
            names = ", ".join(sorted(gdal.GetDataTypeName(t) for t in band_types))
            raise InputError(
                f"{params.FEATURES} '{path}' holds {names} values; it should be the Float32 {params.FEATURES} raster "
                f"written by segmenter:kmeans (or segmenter:cnn) with {params.LABELS}."
            )
        features = cls(_OpenedDataset(dataset), Window.whole(dataset.RasterXSize, dataset.RasterYSize),
                       dataset.RasterCount, path)
        for index in range(dataset.RasterCount):
            value = dataset.GetRasterBand(index + 1).GetNoDataValue()
            features.nodata[index] = value if value is not None and np.isfinite(value) else None
        return features

    @property
    def meta(self):
        """What the raster's metadata says of its features (a ``FeatureMeta``)."""
        return FeatureMeta.read(self.dataset)

    @classmethod
    def create(cls, raster, stride, channels, options, path=None, group=None, scratch=None, in_memory=False):
        grid = Window.whole(raster.width, raster.height).on_grid(stride)
        if in_memory:
            target = _MemoryDataset(grid.width, grid.height, channels)
        elif path is None:
            return cls(_ScratchFile(os.path.join(scratch, "features.f32"), grid.width, grid.height, channels), grid,
                       channels)
        else:
            target = AtomicRaster(path, grid.width, grid.height, channels, gdal.GDT_Float32,
                                  scaled_geotransform(raster.geotransform, stride), raster.projection, options,
                                  gcps_from=raster.dataset, gcp_scale=stride, group=group)
        for band in range(1, channels + 1):
            # NaN nodata before any write: GDAL skips blocks that are all 0 while no nodata is set and fills them
            # with the nodata value at closing, so a channel that is 0 everywhere (a ReLU output) came back as NaN
            target.band(band).SetNoDataValue(float("nan"))
        return cls(target, grid, channels)

    @property
    def dataset(self):
        return self.target.dataset

    def write(self, cells, values):
        """``values`` (C, rows, cols) float32 at the cells of ``cells`` (a Window on the cell grid)."""
        if isinstance(self.target, _ScratchFile):
            self.target.write(cells, values)
            return
        bands, rows, cols = values.shape
        self.target.checked(self.target.dataset.WriteRaster, cells.xoff, cells.yoff, cols, rows,
                            np.ascontiguousarray(values, np.float32).tobytes(), cols, rows, gdal.GDT_Float32,
                            list(range(1, bands + 1)))

    def read(self, cells):
        """The features (C, rows, cols) float32 of the cells of ``cells``."""
        values = read_window(self.dataset, *cells.box, self.path, buf_type=gdal.GDT_Float32)
        return values.reshape(self.channels, cells.height, cells.width)

    def usable(self, values):
        """Which cells of ``values`` (C, ...) hold features (``usable_features``)."""
        return usable_features(values, self.nodata)

    def release_cache(self):
        self.target.release_cache()

    def tag(self, meta):
        """Band names, NaN nodata and SEGMENTER_* metadata (``meta``: a ``FeatureMeta``)."""
        if isinstance(self.target, _ScratchFile):
            return  # read by this run only
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


def usable_features(values, nodata):
    """Which cells of ``values`` (C, ...) hold features: finite, and not the declared ``nodata`` (per band, or None),
    in every band."""
    usable = np.ones(values.shape[1:], bool)
    for channel, value in enumerate(nodata):
        usable &= np.isfinite(values[channel])
        if value is not None:
            usable &= values[channel] != value
    return usable
