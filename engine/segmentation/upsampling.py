"""Cell labels to pixel labels by distances interpolated bilinearly between cell centres, on worker threads.

The same arithmetic, element by element and in the same order, as the first bilinear label pass
(tests/bilinear_reference.py; the result is identical, bit for bit), organised to be fast:

* windows are computed on ``pipeline.ordered_map``'s worker threads (numpy releases the GIL); GDAL reads and
  writes stay in the calling thread, in window order;
* ``first_minimum``: the nearest centre as the minimum of integer keys holding each distance's bits above its
  centre index (the first of equal minima wins, as with ``numpy.argmin``), one reduction instead of ``argmin``;
* pixels are taken by dual blocks (the stride x stride pixels between four cell centres, ``_dual_grid``): a block
  whose four cells are all clearly nearest to one centre takes it without interpolating (see below), as the
  whole label raster first, by ``numpy.repeat`` as K-Means' pass does;
* the other blocks (about a quarter at K = 8) interpolate only the centres that can win there (2-3 of 8),
  with vectors along the blocks: distances across (x) per column phase, then down (y) per row phase, the same
  float32 operations as the reference.

Windows whose cell distances hold NaN (a broken model) take ``numpy.argmin`` itself, which ranks NaN first.
"""

import numpy as np

from ..rasters.labels import NODATA
from ..runtime.pipeline import WORKERS, ordered_map


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

    Running best and second best, one centre after the other (CHUNK cells at a time): on cells, whose nearest
    centre changes in long runs, this is twice as fast as the keys of ``first_minimum``."""
    segments, shape = len(distances), distances.shape[1:]
    flat = distances.reshape(segments, -1)
    count = flat.shape[1]
    index = np.zeros(count, np.int16 if segments < 2**15 else np.intp)
    clear = np.empty(count, bool)
    size = min(count, CHUNK)
    best_buffer, second_buffer, larger_buffer = (np.empty(size, np.float32) for _ in range(3))
    closer_buffer, step_buffer = np.empty(size, bool), np.empty(size, index.dtype)
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        n = stop - start
        best, second, larger = best_buffer[:n], second_buffer[:n], larger_buffer[:n]
        closer, step, where = closer_buffer[:n], step_buffer[:n], index[start:stop]
        np.copyto(best, flat[0, start:stop])
        second.fill(np.inf)
        for k in range(1, segments):
            # no NaN here: second = min(second, max(best, row)), best = min(best, row), and the index takes k
            # where row < best, by the maximum (k exceeds every earlier index)
            row = flat[k, start:stop]
            np.less(row, best, out=closer)
            np.maximum(best, row, out=larger)
            np.minimum(second, larger, out=second)
            np.minimum(best, row, out=best)
            np.multiply(closer, index.dtype.type(k), out=step)
            np.maximum(where, step, out=where)
        np.greater(second.astype(np.float64), best.astype(np.float64) * _CLEAR_FACTOR + _CLEAR_FLOOR,
                   out=clear[start:stop])
        clear[start:stop] &= best < _CLEAR_CEILING
    return index.reshape(shape), clear.reshape(shape)


CHUNK = 16384  # cells per piece of the distance and nearest-centre loops: their arrays stay in the L2 cache


def squared_distances(cells, centres):
    """(K, h, w) float32 squared distances of cells (C, h, w) to every centre: the first label pass's
    arithmetic (from 0, channel after channel, in float32) on the channel planes as read, without transposing,
    CHUNK cells at a time (1.5x faster than whole planes: the K x C passes stay in the cache)."""
    channels = cells.shape[0]
    flat = np.ascontiguousarray(cells).reshape(channels, -1)
    count = flat.shape[1]
    distances = np.zeros((len(centres), count), np.float32)
    difference = np.empty(min(count, CHUNK), np.float32)
    centres = np.asarray(centres, np.float32)
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        piece, planes = difference[: stop - start], flat[:, start:stop]
        for index, centre in enumerate(centres):
            total = distances[index, start:stop]
            for plane, value in zip(planes, centre):
                np.subtract(plane, value, out=piece)
                piece *= piece
                total += piece
    return distances.reshape((len(centres),) + cells.shape[1:])


def _grid(cells, invalid, pad, rows, cols, stride, centres, dtype):
    """Labels (rows * stride, cols * stride) of the pixels of a window's cells (C, h, w), from the cells around
    them: ``_dual_grid``, or (distances with NaN: a broken model) pixel phase by pixel phase with ``argmin``."""
    distances = squared_distances(cells, centres)
    if invalid.any():
        distances[:, invalid] = 0.0  # as the label pass always did: invalid cells are at distance 0 of all
    edges = (pad[:2], pad[2:])  # the window's cells, edge cells repeated where the raster ends
    invalid = np.pad(invalid, edges, mode="edge")
    exact_nan = bool(np.isnan(distances).any())
    if not exact_nan:
        index, clear = (np.pad(array, edges, mode="edge") for array in _nearest_cells(distances))
        return _dual_grid(distances, pad, invalid, index, clear, rows, cols, stride, dtype)
    # a broken model: argmin's ranking of NaN, every cell's pixels interpolated over the K centres
    distances = np.pad(distances, ((0, 0),) + edges, mode="edge")
    nearest = distances.argmin(axis=0)[1:-1, 1:-1].astype(dtype) + 1
    any_invalid = invalid.any()
    grid = np.empty((rows * stride, cols * stride), dtype)
    for r, (ox, ax) in enumerate(phases(stride)):
        across = distances[:, :, 1 + ox : 1 + ox + cols] * ax
        across += distances[:, :, 1 : 1 + cols] * (np.float32(1) - ax)
        bad_x = invalid[:, 1 + ox : 1 + ox + cols] if any_invalid else None
        for q, (oy, ay) in enumerate(phases(stride)):
            value = across[:, 1 + oy : 1 + oy + rows] * ay
            value += across[:, 1 : 1 + rows] * (np.float32(1) - ay)
            ids = (first_minimum(value) + 1).astype(dtype)
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


def _sides(stride):
    """(pixels of a cell before its centre's phases turn to the next cell, per pixel of a dual block: float32
    weight of the first (upper / left) and of the second (lower / right) of its two cells).

    A dual block is the stride x stride pixels between four cell centres; its first ``stride - before`` rows
    are the last phases of the upper cell (their own cell; the lower one is the neighbour), the rest the first
    phases of the lower cell. Each weight is the reference's: the neighbour's ``ay`` and the own cell's
    ``1 - ay``, both float32 as computed there (the sum of two products does not depend on their order)."""
    table = phases(stride)
    before = sum(1 for side, _ in table if side < 0)
    first, second = [], []
    for q in list(range(before, stride)) + list(range(before)):
        weight = table[q][1]
        own = np.float32(1) - weight
        if q >= before:  # own = the first cell, neighbour = the second
            first.append(own)
            second.append(weight)
        else:  # own = the second cell
            first.append(weight)
            second.append(own)
    return before, np.array(first, np.float32), np.array(second, np.float32)


def _dual_grid(distances, pad, invalid, index, clear, rows, cols, stride, dtype):
    """``_grid`` by dual blocks (the stride x stride pixels between four cell centres), bit for bit the same.

    ``distances`` (K, h, w) of the cells read, ``pad`` (top, bottom, left, right: 1 where the edge cells stand in
    for a missing row or column of cells around the window's), and of the padded cells (rows + 2, cols + 2)
    ``invalid``, the first minimum ``index`` and whether it is ``clear`` (``_nearest_cells``). A dual block whose
    four cells are clearly nearest to the same centre takes it whole (as the pixel phases did); the others (about a
    quarter at K = 8) interpolate, and only the centres that can win there: centre k cannot where its smallest
    distance among the four cells exceeds, beyond what rounding can bridge (``_CLEAR_FACTOR``), the largest distance
    of another centre j among them, since every interpolated value lies between its four cells' values up to
    rounding. That leaves 2-3 of 8 centres. Kept centres stay in index order, so ties go to the first as with
    ``argmin``. Blocks with an invalid cell: each pixel takes its own cell's nearest centre (nodata on invalid
    cells), as the pixel phases did."""
    segments = len(distances)
    before, first_w, second_w = _sides(stride)
    labelled = np.where(clear, index, -1)
    upper_left = labelled[:-1, :-1]
    agree = upper_left >= 0
    agree &= upper_left == labelled[:-1, 1:]
    agree &= upper_left == labelled[1:, :-1]
    agree &= upper_left == labelled[1:, 1:]
    dual_rows, dual_cols = rows + 1, cols + 1
    ids = upper_left.astype(dtype)
    ids += 1
    pixels = np.repeat(np.repeat(ids, stride, axis=1), stride, axis=0)  # every block as if its cells agreed
    by_block = pixels.reshape(dual_rows, stride, dual_cols, stride).transpose(0, 2, 1, 3)  # a view
    ii, jj = np.nonzero(~agree)
    if len(ii):
        blocks = len(ii)
        height, width = distances.shape[1:]
        flat = distances.reshape(segments, -1)
        upper_row = np.clip(ii - pad[0], 0, height - 1) * width  # padded cell coordinates on the cells read
        lower_row = np.clip(ii + 1 - pad[0], 0, height - 1) * width
        left, right = np.clip(jj - pad[2], 0, width - 1), np.clip(jj + 1 - pad[2], 0, width - 1)
        corner_cells = [upper_row + left, upper_row + right, lower_row + left, lower_row + right]
        for start in range(0, blocks, BLOCK_CHUNK):  # pieces whose arrays stay in the cache
            piece = slice(start, start + BLOCK_CHUNK)
            _interpolated(by_block, flat, [cell[piece] for cell in corner_cells], ii[piece], jj[piece], first_w,
                          second_w, stride, dtype)
        if invalid.any():
            _own_cells(by_block, invalid, index, ii, jj, stride, before, dtype)
    offset = stride - before
    return pixels[offset : offset + rows * stride, offset : offset + cols * stride]


def _own_cells(by_block, invalid, index, ii, jj, stride, before, dtype):
    """In dual blocks with an invalid cell (``by_block``: the pixels as (dual rows, dual cols, stride, stride)),
    each pixel's own cell's nearest centre, or nodata on an invalid own cell (as the pixel phases did: a pixel
    next to an invalid cell does not interpolate)."""
    four = (invalid[ii, jj] | invalid[ii, jj + 1]) | (invalid[ii + 1, jj] | invalid[ii + 1, jj + 1])
    if not four.any():
        return
    which = np.flatnonzero(four)
    bi, bj = ii[which], jj[which]
    lower = (np.arange(stride) >= stride - before).astype(np.intp)  # own cell: the second of the pair
    own_rows = bi[:, None, None] + lower[None, :, None]  # (n, stride, 1)
    own_cols = bj[:, None, None] + lower[None, None, :]  # (n, 1, stride)
    own = (index[own_rows, own_cols] + 1).astype(dtype)
    own[invalid[own_rows, own_cols]] = NODATA
    by_block[bi, bj] = own


BLOCK_CHUNK = 16384  # dual blocks interpolated at a time


def _interpolated(by_block, flat, corner_cells, ii, jj, first_w, second_w, stride, dtype):
    """Labels of the dual blocks (``ii``, ``jj``) whose cells disagree, written into ``by_block``: the centres
    that can win there (see ``_dual_grid``), interpolated across then down as the reference, the first minimum."""
    blocks = len(ii)
    corners = [np.take(flat, cell, axis=1) for cell in corner_cells]  # (K, M): UL, UR, LL, LR
    low = np.minimum(np.minimum(corners[0], corners[1]), np.minimum(corners[2], corners[3]))
    high = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    bound = high.min(axis=0).astype(np.float64)
    bound[bound >= _CLEAR_CEILING] = np.inf  # near float32's overflow interpolation may reach infinity
    bound *= _CLEAR_FACTOR
    bound += _CLEAR_FLOOR
    bound32 = bound.astype(np.float32)
    bound32 = np.where(bound32 < bound, np.nextafter(bound32, np.float32(np.inf)), bound32)  # rounded up
    candidates = low <= bound32  # (K, M): at least the centre of the smallest high
    counts = candidates.sum(axis=0)
    corner_flat = [corner.ravel() for corner in corners]
    first_x, second_x = first_w[:, None], second_w[:, None]
    first_y, second_y = first_w[:, None, None], second_w[:, None, None]
    # arrays of the interpolation reused from centre to centre and group to group (fresh 1 MB temporaries for every
    # product made the arithmetic 2.7x slower)
    across = [np.empty(stride * blocks, np.float32) for _ in range(3)]  # top, bottom, a product
    down = [np.empty(stride * stride * blocks, np.float32) for _ in range(3)]  # best, value, a product
    closer_flat = np.empty(stride * stride * blocks, bool)
    for count in np.unique(counts):
        members = np.flatnonzero(counts == count)
        group = candidates[:, members]  # (K, n)
        if count == 2:  # most blocks: the first and the last candidate
            chosen = np.stack([group.argmax(axis=0), len(group) - 1 - group[::-1].argmax(axis=0)])
        else:  # the candidates of each member block, in index order: (count, n)
            chosen = np.nonzero(group.T)[1].reshape(len(members), count).T
        ids = (chosen + 1).astype(dtype)
        if count == 1:  # the one centre that can win
            by_block[ii[members], jj[members]] = np.broadcast_to(ids[0], (stride, stride, len(members))).transpose(
                2, 0, 1)
            continue
        where = chosen * blocks
        where += members
        values = [np.take(corner, where) for corner in corner_flat]  # (count, n) each
        n = len(members)
        top, bottom, product = (array[: stride * n].reshape(stride, n) for array in across)
        best, value, larger = (array[: stride * stride * n].reshape(stride, stride, n) for array in down)
        closer = closer_flat[: stride * stride * n].reshape(stride, stride, n)
        position = None
        for c in range(count):
            # across (x) per column phase, then down (y) per row phase, as the reference
            target = best if c == 0 else value
            np.multiply(values[0][c], first_x, out=top)
            np.multiply(values[1][c], second_x, out=product)
            top += product
            np.multiply(values[2][c], first_x, out=bottom)
            np.multiply(values[3][c], second_x, out=product)
            bottom += product  # (stride, n)
            np.multiply(top, first_y, out=target)
            np.multiply(bottom, second_y, out=larger)
            target += larger  # (stride, stride, n)
            if c == 0:
                continue
            np.less(value, best, out=closer)  # strictly: the first of equal minima keeps it
            if count == 2:  # the second id where it is closer (ids in index order: no wrap)
                position = np.multiply(closer, ids[1] - ids[0], dtype=dtype)
                position += ids[0]
                break
            # c is above every earlier position: the maximum takes c exactly where this centre is closer
            step = closer.view(np.uint8) * np.uint8(c) if count <= 256 else closer * np.int32(c)
            position = step if position is None else np.maximum(position, step, out=position)
            if c + 1 < count:
                np.minimum(best, value, out=best)  # no NaN here: the smaller of the two is the new best
        if count == 2:
            labels = position
        else:
            labels = np.take_along_axis(ids, position.reshape(stride * stride, -1).astype(np.intp), axis=0).reshape(
                stride, stride, -1)
        by_block[ii[members], jj[members]] = labels.transpose(2, 0, 1)
