"""Cell labels to pixel labels by distances interpolated bilinearly between cell centres, on worker threads.

The same arithmetic, element by element and in the same order, as the first bilinear label pass
(tests/bilinear_reference.py; the result is identical, bit for bit), organised to be fast:

* windows are computed on ``pipeline.ordered_map``'s worker threads (numpy releases the GIL); GDAL reads and
  writes stay in the calling thread, in window order;
* the nearest centre of K interpolated distances is the minimum of integer keys holding each distance's bits
  above its centre index (the first of equal minima wins, as with ``numpy.argmin``), one reduction instead of
  ``argmin`` over the centre axis, which copies and walks K values per pixel;
* pixels whose four cells are all clearly nearest to one centre take it without interpolating (see below);
* distances are interpolated across (x) once per column phase and down (y) per row phase, as before.

Windows whose cell distances hold NaN (a broken model) take ``numpy.argmin`` itself, which ranks NaN first.
"""

import numpy as np

from .labels import NODATA
from .pipeline import WORKERS, ordered_map


def phases(stride):
    """Per pixel offset q in a cell: (neighbour cell offset -1/+1, float32 weight of that neighbour)."""
    result = []
    for q in range(stride):
        delta = (2 * q + 1 - stride) / (2 * stride)  # pixel centre minus cell centre, in cells
        result.append((-1 if delta < 0 else 1, np.float32(abs(delta))))
    return result


def _keys(values):
    """int64 keys ordering (K, ...) non-negative float32 values as the floats, ties by index along axis 0: the
    float's bits (non-negative IEEE floats order as their bit patterns) above the index."""
    shift = max(1, (len(values) - 1).bit_length())
    keys = values.view(np.int32).astype(np.int64)
    keys <<= shift
    keys += np.arange(len(values)).reshape((-1,) + (1,) * (values.ndim - 1))
    return keys, shift


def first_minimum(values, exact_nan=True):
    """Index along axis 0 of the first minimum of non-negative float32 ``values`` (K, ...), as
    ``values.argmin(axis=0)`` gives it (``exact_nan``: ranking NaN first as argmin does, at the cost of a check).

    The minimum of keys that hold each value's bits above its index: one reduction, no walk along axis 0."""
    if exact_nan and np.isnan(values).any():
        return values.argmin(axis=0)
    keys, shift = _keys(values)
    return np.minimum.reduce(keys, axis=0) & ((1 << shift) - 1)


# A cell is "clearly" nearest to its centre j when every other centre is farther by more than rounding can
# bridge: d_k > d_j (1 + 32 u) + 1e-30 for all k != j (u = 2**-24, float32's unit roundoff). Bilinear weights
# are >= 0 and float32 arithmetic is monotonic, so a pixel whose four cells are all clearly nearest to the same
# j has an interpolated d_j below every other interpolated d_k even after rounding (each interpolated value is
# within a factor (1 +- u)^4 of the exact one): its label is j without interpolating anything. Only the other
# pixels (about a quarter on imagery at K = 8) interpolate all K distances.
_CLEAR_FACTOR = 1.0 + 32.0 * 2.0**-24
_CLEAR_FLOOR = 1e-30  # keeps interpolated values of 'farther' centres far above float32's subnormal range
_CLEAR_CEILING = 1e37  # below float32's overflow: interpolated values of the nearest centre stay finite


def _nearest_cells(distances):
    """(index of the first minimum, whether it is clear by the margin above) of every cell of (K, h, w).

    Running best and second best, one centre after the other: on cells, whose nearest centre changes in long
    runs, this is twice as fast as the keys of ``first_minimum``."""
    best = distances[0].copy()
    second = np.full(best.shape, np.inf, np.float32)
    index = np.zeros(best.shape, np.intp)
    closer = np.empty(best.shape, bool)
    lower = np.empty(best.shape, np.float32)
    for k in range(1, len(distances)):
        np.less(distances[k], best, out=closer)
        np.minimum(second, distances[k], out=lower)
        np.copyto(lower, best, where=closer)
        second, lower = lower, second
        np.copyto(best, distances[k], where=closer)
        np.copyto(index, k, where=closer)
    clear = second.astype(np.float64) > best.astype(np.float64) * _CLEAR_FACTOR + _CLEAR_FLOOR
    clear &= best < _CLEAR_CEILING
    return index, clear


def squared_distances(cells, centres):
    """(K, h, w) float32 squared distances of cells (C, h, w) to every centre: the first label pass's
    arithmetic (from 0, channel after channel, in float32) on the channel planes as read, without transposing."""
    distances = np.zeros((len(centres),) + cells.shape[1:], np.float32)
    difference = np.empty(cells.shape[1:], np.float32)
    for index, centre in enumerate(np.asarray(centres, np.float32)):
        for plane, value in zip(cells, centre):
            np.subtract(plane, value, out=difference)
            difference *= difference
            distances[index] += difference
    return distances


def _grid(cells, invalid, pad, rows, cols, stride, centres, dtype):
    """Labels (rows * stride, cols * stride) of the pixels of a window's cells (C, h, w), from the cells around
    them."""
    segments = len(centres)
    distances = squared_distances(cells, centres)
    if invalid.any():
        distances[:, invalid] = 0.0  # as the label pass always did: invalid cells are at distance 0 of all
    distances = np.pad(distances, ((0, 0), pad[:2], pad[2:]), mode="edge")
    invalid = np.pad(invalid, (pad[:2], pad[2:]), mode="edge")
    exact_nan = bool(np.isnan(distances).any())
    if exact_nan:  # a broken model: argmin's ranking of NaN, and no shortcut
        index = distances.argmin(axis=0)
        clear = np.zeros(index.shape, bool)
    else:
        index, clear = _nearest_cells(distances)
    nearest = index[1:-1, 1:-1].astype(dtype) + 1
    labelled = np.where(clear, index, -1)
    any_invalid = invalid.any()
    grid = np.empty((rows * stride, cols * stride), dtype)
    own = labelled[1 : 1 + rows, 1 : 1 + cols]
    agreed = own.astype(dtype)  # ids where the four cells agree (elsewhere rewritten below)
    agreed += 1
    # The four cells of a pixel depend only on the sides (ox, oy) its offset lies on: which pixels need the K
    # interpolations is found once per side, not once per offset.
    others = {}
    for ox in (-1, 1):
        side = labelled[:, 1 + ox : 1 + ox + cols]
        for oy in (-1, 1):
            agree = (own >= 0) & (own == side[1 : 1 + rows])
            agree &= own == labelled[1 + oy : 1 + oy + rows, 1 : 1 + cols]
            agree &= own == side[1 + oy : 1 + oy + rows]
            others[ox, oy] = np.flatnonzero(~agree)
    by_side = {}
    for q, (oy, ay) in enumerate(phases(stride)):
        by_side.setdefault(oy, []).append((q, ay))
    for r, (ox, ax) in enumerate(phases(stride)):
        across = distances[:, :, 1 + ox : 1 + ox + cols] * ax
        across += distances[:, :, 1 : 1 + cols] * (np.float32(1) - ax)
        bad_x = invalid[:, 1 + ox : 1 + ox + cols] if any_invalid else None
        for oy, offsets in by_side.items():
            rest = others[ox, oy]
            if len(rest):  # np.take keeps (K, M) C-ordered (fancy indexing would give K-contiguous columns)
                upper = np.take(across[:, 1 + oy : 1 + oy + rows].reshape(segments, -1), rest, axis=1)
                lower = np.take(across[:, 1 : 1 + rows].reshape(segments, -1), rest, axis=1)
            for q, ay in offsets:
                ids = agreed.copy()
                if len(rest):
                    value = upper * ay
                    value += lower * (np.float32(1) - ay)
                    ids.ravel()[rest] = first_minimum(value, exact_nan=exact_nan) + 1
                if any_invalid:
                    bad = bad_x[1 : 1 + rows] | bad_x[1 + oy : 1 + oy + rows] | invalid[1 + oy : 1 + oy + rows,
                                                                                          1 : 1 + cols]
                    ids = np.where(bad, nearest, ids)
                grid[q::stride, r::stride] = ids
    if any_invalid:
        own_invalid = invalid[1:-1, 1:-1]
        grid[np.repeat(np.repeat(own_invalid, stride, axis=0), stride, axis=1)] = NODATA
    return grid


def write_labels_bilinear(raster, windows, stride, features, centres, labels, progress, present=None,
                          workers=WORKERS, mapper=ordered_map):
    """The bilinear label pass, windows computed on ``workers`` threads (``mapper``: ``pipeline.ordered_map``, or
    a Dask cluster's ``Cluster.mapper``).

    Each pixel takes the centre nearest in distances interpolated bilinearly between the four cells around it
    (cell centres at the middle of their stride x stride pixels); next to a nodata cell a pixel keeps its own
    cell's centre; at the raster's edge the edge cells are repeated; pixels the input marks invalid are nodata.
    """
    grid_w, grid_h = features.RasterXSize, features.RasterYSize
    dtype = np.uint8 if len(centres) <= 255 else np.uint16

    def read(window):
        cell_window = window.on_grid(stride)
        row0, col0, rows, cols = cell_window.yoff, cell_window.xoff, cell_window.height, cell_window.width
        top, left = max(0, row0 - 1), max(0, col0 - 1)
        bottom, right = min(grid_h, row0 + rows + 1), min(grid_w, col0 + cols + 1)
        cells = features.ReadAsArray(left, top, right - left, bottom - top)
        features.FlushCache()  # drop the blocks just read: memory follows the window, not the raster
        pixel_valid = None
        if raster.has_mask:
            pixel_valid = raster.read_valid(window)
            raster.release_cache()
        pad = (int(row0 - top == 0), row0 + rows + 1 - bottom, int(col0 - left == 0), col0 + cols + 1 - right)
        return window, cells, pad, rows, cols, pixel_valid

    def compute(window, cells, pad, rows, cols, pixel_valid):
        invalid = np.isnan(cells[0])
        grid = _grid(cells, invalid, pad, rows, cols, stride, centres, dtype)
        pixels = grid[: window.height, : window.width]
        if pixel_valid is not None:
            pixels = np.where(pixel_valid, pixels, NODATA).astype(dtype)
        return pixels

    for number, (window, pixels) in enumerate(mapper(read, compute, windows, workers)):
        if present is not None:
            present.add(pixels)
        labels.write(pixels, window.xoff, window.yoff)
        labels.release_cache()
        progress.update((number + 1) / len(windows), f"Assigning segments ({number + 1}/{len(windows)} windows)")
