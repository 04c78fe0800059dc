"""The steps every segmentation method shares once its features are on disk.

A method writes a feature raster (C Float32 bands on a grid of ``stride`` x ``stride`` pixel cells, NaN where
a cell has no valid pixel), fits centres on a sample, and then calls ``write_labels`` to assign every cell to
its nearest centre and write the labels on the input's pixel grid, window by window.
"""

import numpy as np

from . import kmeans
from .labels import NODATA, PresentIds, fewer_segments, finish_label_raster, label_type
from .palette import qualitative
from .pipeline import ordered_map
from .raster_io import AtomicRaster


def write_labels(raster, windows, stride, features, centres, labels, progress, present=None):
    """Assign the cells of feature dataset ``features`` to ``centres`` and write ids 1..K (0 = nodata).

    ``windows`` cover the input's pixel grid with offsets that are multiples of ``stride``; each cell's id is
    repeated over its pixels, and pixels the input marks invalid are written as nodata. ``present`` (a
    ``PresentIds``) learns the ids written.
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

    for number, (window, pixels) in enumerate(ordered_map(read, compute, windows)):
        if present is not None:
            present.add(pixels)
        labels.write(pixels, window.xoff, window.yoff)  # blocks cut by windows stay in GDAL's (capped) cache
        progress.update((number + 1) / len(windows), f"Assigning segments ({number + 1}/{len(windows)} windows)")


def squared_distances(features, centres):
    """(K, n) float32 squared distances of every row of ``features`` (n, C) to every centre.

    Element-wise in a fixed order (like ``kmeans.assign``), so a cell's distances do not depend on the window.
    """
    columns = [np.ascontiguousarray(features[:, channel], np.float32) for channel in range(features.shape[1])]
    distances = np.zeros((len(centres), features.shape[0]), np.float32)
    difference = np.empty(features.shape[0], np.float32)
    for index, centre in enumerate(np.asarray(centres, np.float32)):
        for column, value in zip(columns, centre):
            np.subtract(column, value, out=difference)
            difference *= difference
            distances[index] += difference
    return distances


def _phases(stride):
    """Per pixel offset q in a cell: (neighbour cell offset -1/+1, float32 weight of that neighbour)."""
    phases = []
    for q in range(stride):
        delta = (2 * q + 1 - stride) / (2 * stride)  # pixel centre minus cell centre, in cells
        phases.append((-1 if delta < 0 else 1, np.float32(abs(delta))))
    return phases


def write_labels_bilinear(raster, windows, stride, features, centres, labels, progress, present=None):
    """Like ``write_labels``, but each pixel takes the centre nearest in distances interpolated bilinearly
    between the four cells around it (cell centres at the middle of their stride x stride pixels).

    Boundaries follow the content at pixel resolution instead of the cell grid's staircase. Where the four
    cells agree on a centre the result is that centre (a convex combination keeps the order); next to a
    nodata cell a pixel keeps its own cell's centre; at the raster's edge the edge cells are repeated.
    Window-independent: each pixel's value comes from the same four cells by the same arithmetic.
    """
    grid_w, grid_h = features.RasterXSize, features.RasterYSize
    phases = _phases(stride)
    dtype = np.uint8 if len(centres) <= 255 else np.uint16
    for number, window in enumerate(windows):
        cell_window = window.on_grid(stride)
        row0, col0, rows, cols = cell_window.yoff, cell_window.xoff, cell_window.height, cell_window.width
        top, left = max(0, row0 - 1), max(0, col0 - 1)
        bottom, right = min(grid_h, row0 + rows + 1), min(grid_w, col0 + cols + 1)
        cells = features.ReadAsArray(left, top, right - left, bottom - top)
        features.FlushCache()
        cells = cells.reshape(cells.shape[0], -1).T
        invalid = np.isnan(cells[:, 0])
        distances = np.zeros((len(centres), len(cells)), np.float32)
        distances[:, ~invalid] = squared_distances(cells[~invalid], centres)
        shape = (bottom - top, right - left)
        pad = ((row0 - top == 0) * 1, (row0 + rows + 1 - bottom) * 1, (col0 - left == 0) * 1,
               (col0 + cols + 1 - right) * 1)
        distances = np.pad(distances.reshape(len(centres), *shape), ((0, 0), pad[:2], pad[2:]), mode="edge")
        invalid = np.pad(invalid.reshape(shape), (pad[:2], pad[2:]), mode="edge")
        nearest = distances[:, 1:-1, 1:-1].argmin(axis=0).astype(dtype) + 1
        own_invalid = invalid[1:-1, 1:-1]
        any_invalid = invalid.any()
        grid = np.empty((rows * stride, cols * stride), dtype)
        for r, (ox, ax) in enumerate(phases):
            across = distances[:, :, 1 + ox : 1 + ox + cols] * ax
            across += distances[:, :, 1 : 1 + cols] * (np.float32(1) - ax)
            bad_x = invalid[:, 1 + ox : 1 + ox + cols] if any_invalid else None
            for q, (oy, ay) in enumerate(phases):
                value = across[:, 1 + oy : 1 + oy + rows] * ay
                value += across[:, 1 : 1 + rows] * (np.float32(1) - ay)
                ids = value.argmin(axis=0).astype(dtype) + 1
                if any_invalid:
                    bad = bad_x[1 : 1 + rows] | bad_x[1 + oy : 1 + oy + rows] | invalid[1 + oy : 1 + oy + rows,
                                                                                          1 : 1 + cols]
                    ids = np.where(bad, nearest, ids)
                grid[q::stride, r::stride] = ids
        if any_invalid:
            grid[np.repeat(np.repeat(own_invalid, stride, axis=0), stride, axis=1)] = NODATA
        pixels = grid[: window.height, : window.width]
        if raster.has_mask:
            pixel_valid = raster.read_valid(window)
            if pixel_valid is not None:
                pixels = np.where(pixel_valid, pixels, NODATA).astype(dtype)
        if present is not None:
            present.add(pixels)
        labels.write(pixels, window.xoff, window.yoff)
        progress.update((number + 1) / len(windows), f"Assigning segments ({number + 1}/{len(windows)} windows)")


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
