"""The steps every segmentation method shares once its features are on disk.

A method writes a feature raster (C Float32 bands on a grid of ``stride`` x ``stride`` pixel cells, NaN where
a cell has no valid pixel), fits centres on a sample, and then calls ``write_labels`` to assign every cell to
its nearest centre and write the labels on the input's pixel grid, window by window.
"""

import numpy as np

from ..rasters.labels import NODATA, PresentIds, fewer_segments, finish_label_raster, label_type
from ..rasters.palette import qualitative
from ..rasters.raster_io import AtomicRaster
from ..runtime.pipeline import ordered_map
from . import kmeans


def assign_cells(window, descriptors, pixel_valid, stride, centres):
    """Labels of the window's pixels from its cells' ``descriptors`` (rows * cols, C), NaN = no valid pixel: each
    cell's nearest centre (ids 1..K) repeated over its pixels, nodata where ``pixel_valid`` (or None) is False."""
    cell_window = window.on_grid(stride)
    rows, cols = cell_window.height, cell_window.width
    valid = ~np.isnan(descriptors[:, 0])
    grid = np.zeros(rows * cols, np.uint8 if len(centres) <= 255 else np.uint16)
    grid[valid] = kmeans.assign(descriptors[valid], centres) + 1
    grid = grid.reshape(rows, cols)
    pixels = np.repeat(np.repeat(grid, stride, axis=0), stride, axis=1)[: window.height, : window.width]
    if pixel_valid is not None:
        pixels = np.where(pixel_valid, pixels, NODATA).astype(pixels.dtype)
    return pixels


def write_windows(results, windows, labels, progress, present=None, stage="Assigning segments", release=False):
    """Write ``(window, pixels)`` results, in order, into the label raster ``labels``; ``release``: hand GDAL's
    cached blocks of it to the file after each window (else blocks cut by windows stay in its capped cache)."""
    for number, (window, pixels) in enumerate(results):
        if present is not None:
            present.add(pixels)
        labels.write(pixels, window.xoff, window.yoff)
        if release:
            labels.release_cache()
        pixels = None  # let go of this window before the next one is read (pipeline.ordered_map)
        progress.update((number + 1) / len(windows), f"{stage} ({number + 1}/{len(windows)} windows)")


def write_labels(raster, windows, stride, features, centres, labels, progress, present=None, mapper=ordered_map):
    """Assign the cells of feature dataset ``features`` to ``centres`` and write ids 1..K (0 = nodata).

    ``windows`` cover the input's pixel grid with offsets that are multiples of ``stride``; each cell's id is
    repeated over its pixels, and pixels the input marks invalid are written as nodata. ``present`` (a
    ``PresentIds``) learns the ids written. ``mapper``: ``pipeline.ordered_map`` or a cluster's.
    """

    def read(window):
        cell_window = window.on_grid(stride)
        rows, cols = cell_window.height, cell_window.width
        descriptors = features.ReadAsArray(*cell_window.box)
        features.FlushCache()  # drop the blocks just read: memory follows the window, not the raster
        pixel_valid = None
        if raster.has_mask:
            pixel_valid = raster.read_valid(window)
        return window, descriptors.reshape(-1, rows * cols).T, pixel_valid

    def compute(window, descriptors, pixel_valid):
        return assign_cells(window, descriptors, pixel_valid, stride, centres)

    write_windows(mapper(read, compute, windows), windows, labels, progress, present)


def write_label_raster(raster, windows, stride, features, centres, output_path, metadata, progress,
                       assign=None, group=None):
    """Assign and write the whole label raster at ``output_path`` (atomically, in the run's ``group``), styled
    and tagged.

    Returns the number of segments that occur in it, and warns when that is fewer than the centres: K-Means
    cannot make K kinds of region of a raster whose blocks are all alike (one colour)."""
    segments = len(centres)
    present = PresentIds()
    with AtomicRaster(output_path, raster.width, raster.height, 1, label_type(segments), raster.geotransform,
                      raster.projection, palette=qualitative(segments), gcps_from=raster.dataset,
                      group=group) as labels:
        progress.start("Assigning segments")
        (assign or write_labels)(raster, windows, stride, features, centres, labels, progress, present)
        finish_label_raster(labels, segments, metadata)
    few = fewer_segments(present, segments, f"the valid pixels of '{raster.path}' are too alike to make "
                                            f"{segments} kinds of region (the other centres are nearest to none).")
    if few:
        progress.warn(few)
    return present.count
