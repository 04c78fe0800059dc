"""The bilinear label pass as first written (one window after the other, plain numpy): the oracle
engine/segmentation/upsampling.write_labels_bilinear must equal bit for bit (tests/engine/test_upsampling.py)."""

import numpy as np

from map_segmenter.engine.rasters.labels import NODATA


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


def phases_of(stride):
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
    phases = phases_of(stride)
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


