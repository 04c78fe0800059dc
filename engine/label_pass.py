"""The steps every segmentation method shares once its features are on disk.

A method writes a feature raster (C Float32 bands on a grid of ``stride`` x ``stride`` pixel cells, NaN where
a cell has no valid pixel), fits centres on a sample, and then calls ``write_labels`` to assign every cell to
its nearest centre and write the labels on the input's pixel grid, window by window.
"""

import numpy as np

from . import kmeans
from .errors import InputError
from .labels import NODATA, PresentIds, fewer_segments, finish_label_raster, label_type, write_metadata
from .palette import qualitative
from .pipeline import ordered_map
from .raster_io import AtomicRaster


def centres_for(sample, valid, segments, reference, fit, progress, input_path, bands, units, advice):
    """The segment centres: the reference's, or ``fit(sample)``, once the sample is known to be usable.

    ``valid`` cells were described (``units`` names them in messages); ``advice`` says what to change when there
    are fewer than ``segments``."""
    if valid == 0:
        raise InputError(
            f"The raster '{input_path}' has no valid pixels in BANDS {bands} (all nodata or "
            f"transparent). Choose another raster or other bands."
        )
    if valid < segments:
        raise InputError(f"Only {valid} valid {units} for {segments} segments. {advice}")
    progress.start("Fitting centres")
    centres = reference["centres"] if reference is not None else fit(sample)
    progress.update(1.0)
    return centres


def tag_features(features, meta):
    """Band names, NaN nodata and SEGMENTER_* metadata on an ``AtomicRaster`` of features."""
    for index, name in enumerate(meta["names"], start=1):
        features.band(index).SetDescription(name)
        features.band(index).SetNoDataValue(float("nan"))
    write_metadata(features.dataset, **meta)
    features.release_cache()


def assign_cells(window, descriptors, pixel_valid, stride, centres):
    """Labels of the window's pixels from its cells' ``descriptors`` (rows * cols, C), NaN = no valid pixel: each
    cell's nearest centre (ids 1..K) repeated over its pixels, nodata where ``pixel_valid`` (or None) is False."""
    rows, cols = -(-window.height // stride), -(-window.width // stride)
    valid = ~np.isnan(descriptors[:, 0])
    grid = np.zeros(rows * cols, np.uint8 if len(centres) <= 255 else np.uint16)
    grid[valid] = kmeans.assign(descriptors[valid], centres) + 1
    grid = grid.reshape(rows, cols)
    pixels = np.repeat(np.repeat(grid, stride, axis=0), stride, axis=1)[: window.height, : window.width]
    if pixel_valid is not None:
        pixels = np.where(pixel_valid, pixels, NODATA).astype(pixels.dtype)
    return pixels


def write_windows(results, windows, labels, progress, present=None):
    """Write ``(window, pixels)`` results, in order, into the label raster ``labels``."""
    for number, (window, pixels) in enumerate(results):
        if present is not None:
            present.add(pixels)
        labels.write(pixels, window.xoff, window.yoff)  # blocks cut by windows stay in GDAL's (capped) cache
        progress.update((number + 1) / len(windows), f"Assigning segments ({number + 1}/{len(windows)} windows)")


def write_labels(raster, windows, stride, features, centres, labels, progress, present=None, mapper=ordered_map):
    """Assign the cells of feature dataset ``features`` to ``centres`` and write ids 1..K (0 = nodata).

    ``windows`` cover the input's pixel grid with offsets that are multiples of ``stride``; each cell's id is
    repeated over its pixels, and pixels the input marks invalid are written as nodata. ``present`` (a
    ``PresentIds``) learns the ids written. ``mapper``: ``pipeline.ordered_map`` or a cluster's.
    """

    def read(window):
        rows, cols = -(-window.height // stride), -(-window.width // stride)
        descriptors = features.ReadAsArray(window.xoff // stride, window.yoff // stride, cols, rows)
        features.FlushCache()  # drop the blocks just read: memory follows the window, not the raster
        pixel_valid = None
        if raster.has_mask:
            pixel_valid = raster.read_valid(window.xoff, window.yoff, window.width, window.height)
        return window, descriptors.reshape(-1, rows * cols).T, pixel_valid

    def compute(window, descriptors, pixel_valid):
        return assign_cells(window, descriptors, pixel_valid, stride, centres)

    write_windows(mapper(read, compute, windows), windows, labels, progress, present)


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
        row0, col0 = window.yoff // stride, window.xoff // stride
        rows, cols = -(-window.height // stride), -(-window.width // stride)
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
            pixel_valid = raster.read_valid(window.xoff, window.yoff, window.width, window.height)
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
