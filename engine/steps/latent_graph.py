"""Edge-aware label propagation on the block graph: the numerics of segmenter:knn_refine's default formulation.

Every cell of the FEATURES grid (a "block", stride r px of LABELS) is a node. It is linked to the blocks around it
(``graph_offsets``: the NEIGHBORS nearest positions, whole rings), and a link's weight says how alike the two
blocks look: w = exp(-(||f_i - f_j||^2 / s^2 + (SPATIAL_WEIGHT d_ij)^2) / (2 h^2)), d_ij in blocks, s^2 the
features' spread around their segment centres, h = FEATURE_BANDWIDTH. A link across an image edge (very different
features) weighs almost nothing, so labels flow along regions and not across their boundaries.

Each block starts from a calibrated prior p0 = (1 - LABEL_SHARE) softmax(-||f - c_k||^2 / (T s^2)) +
LABEL_SHARE x (the shares of the ids among the block's LABELS pixels), T = TEMPERATURE x the temperature fitted
on the index (``fit_temperature``: the one whose softmax best predicts the labels of each block's right and lower
neighbours). Then ITERATIONS steps of label propagation

    q_(t+1) = (1 - MIX) p0 + MIX sum_j (w_ij / sum_j w_ij) q_t(j)

(Zhou et al. 2004: with MIX < 1 it converges, to (1 - MIX)(I - MIX W)^-1 p0; each step reaches one ring of links
further). Pixels take the segment with the highest refined score interpolated bilinearly between the four block
centres around them (``pixel_labels``), so boundaries are drawn at pixel resolution, not on the block grid.

Exact tiling: every value is computed element-wise in float32 in a fixed order, from inputs within a fixed reach,
so a block's result does not depend on the window it is computed in. A window needs a halo of
ITERATIONS x (graph radius) + 1 blocks (``GraphModel.halo``).

Everything here works on numpy arrays of one window (C or K planes of h x w blocks); ``map_rows`` lets the
caller spread independent row bands over threads.
"""

from dataclasses import dataclass

import numpy as np

from ..segmentation.upsampling import phases as cell_phases

FEATURE_BANDWIDTH = 2.0  # h, in units of s (bench/eval_refine.py: 1.0 -0.2 mIoU, 4.0 within 0.05 of 2.0)
LABEL_SHARE = 0.5  # weight of the LABELS' own ids in the prior (the predecessor's 0.5 x onehot(seed))
TEMPERATURE_GRID = tuple(2.0 ** (step / 4) for step in range(-28, 25))  # 1/128 .. 64, 19 % apart
ROW_BAND = 16  # rows of blocks per piece of work: small enough for the CPU cache, large enough for numpy


def graph_offsets(neighbours):
    """Offsets (dy, dx) of the blocks each block is linked to: every position at most as far as its
    ``neighbours``-th nearest one (whole rings: 4, 8, 12, 20, 24, 28, 36...), nearest first, then by (dy, dx)."""
    neighbours = max(1, int(neighbours))
    radius = 1
    while (2 * radius + 1) ** 2 - 1 < neighbours:
        radius += 1
    reach = 2 * radius  # the disc through the farthest corner of the square fits in the square twice as large
    candidates = sorted((dy * dy + dx * dx, dy, dx) for dy in range(-reach, reach + 1)
                        for dx in range(-reach, reach + 1) if dy or dx)
    limit = candidates[neighbours - 1][0]
    return tuple((dy, dx) for distance, dy, dx in candidates if distance <= limit)


@dataclass(frozen=True)
class GraphModel:
    centres: np.ndarray  # (K, C) float64; rows with NaN are ids without a centre (never chosen)
    scale2: float  # s^2: mean squared distance of the index blocks to their own segment's centre
    temperature: float  # T of the prior, relative to s^2 (TEMPERATURE x the fitted one)
    offsets: tuple  # graph_offsets(NEIGHBORS)
    spatial_weight: float
    mix: float
    iterations: int
    bandwidth: float = FEATURE_BANDWIDTH
    label_share: float = LABEL_SHARE

    @property
    def radius(self):
        return max(max(abs(dy), abs(dx)) for dy, dx in self.offsets)

    @property
    def halo(self):
        """Blocks a window must be grown by on each side: the propagation's reach plus one for the pixels'
        interpolation."""
        return self.iterations * self.radius + 1

    @property
    def segments(self):
        return len(self.centres)


def map_rows(height, function, mapper=map):
    """``function(slice)`` over bands of ROW_BAND rows of ``height`` (results in order)."""
    return list(mapper(function, [slice(top, min(height, top + ROW_BAND)) for top in range(0, height, ROW_BAND)]))


# ---------------------------------------------------------------- calibration (on the index sample)


def squared_distances(features, centres):
    """(n, K) float64 squared distances of ``features`` (n, C) to the centres (inf for centres with NaN)."""
    features = np.asarray(features, np.float64)
    result = np.full((len(features), len(centres)), np.inf)
    for segment, centre in enumerate(centres):
        if np.isfinite(centre).all():
            difference = features - centre
            result[:, segment] = np.einsum("ij,ij->i", difference, difference)
    return result


def scale2_of(distances, seeds):
    """s^2: the mean squared distance of the blocks to their own segment's centre (1 when degenerate)."""
    own = distances[np.arange(len(seeds)), seeds - 1] if len(seeds) else np.empty(0)
    own = own[np.isfinite(own)]
    value = float(np.mean(own)) if len(own) else 1.0
    return value if np.isfinite(value) and value > 0 else 1.0


def _neighbour_loss(chosen, finite, labels, temperature, scale2):
    """Mean negative log-likelihood of ``labels`` under softmax(-d^2 / (T s^2)) of the rows ``chosen``."""
    logits = np.where(finite, -chosen / (temperature * scale2), -np.inf)
    top = logits.max(axis=1, keepdims=True)
    normaliser = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    target = logits[np.arange(len(labels)), labels - 1]
    return float(np.mean(np.minimum(normaliser - target, 50.0)))  # a missing centre costs as e^-50


def fit_temperature(distances, scale2, sources, labels):
    """The T (relative to s^2) of TEMPERATURE_GRID whose softmax(-d^2 / (T s^2)) gives the labels of the blocks'
    neighbours the highest mean log-likelihood: ``sources`` index rows of ``distances``, ``labels`` (1..K) are
    the ids of their right or lower neighbours. 1.0 when there is no pair to fit on.

    Every fourth grid value first, then the three on each side of the best of those (the loss has one minimum)."""
    if len(sources) == 0:
        return 1.0
    chosen = distances[sources]
    finite = np.isfinite(chosen)
    losses = {}

    def loss(step):
        if step not in losses:
            losses[step] = _neighbour_loss(chosen, finite, labels, TEMPERATURE_GRID[step], scale2)
        return losses[step]

    coarse = min(range(0, len(TEMPERATURE_GRID), 4), key=lambda step: (loss(step), step))
    fine = range(max(0, coarse - 3), min(len(TEMPERATURE_GRID), coarse + 4))
    return TEMPERATURE_GRID[min(fine, key=lambda step: (loss(step), step))]


# ---------------------------------------------------------------- one window


@dataclass
class LabelShares:
    """The share of each id among the non-zero LABELS pixels of each block: ``uniform`` (h, w) is the id of the
    blocks whose valid pixels all carry one id (0 elsewhere); the other blocks are listed: rows, cols and their
    shares (M, K)."""

    uniform: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    shares: np.ndarray


def label_shares(pixels, seeds, stride, segments):
    """The ids' shares in each block (``LabelShares``). ``pixels`` starts at a block corner (partial blocks at the
    right and bottom); ``seeds`` (h, w) from ``block_seeds``. For K-Means labels every block is uniform."""
    rows, cols = seeds.shape
    if pixels.shape != (rows * stride, cols * stride):
        padded = np.zeros((rows * stride, cols * stride), pixels.dtype)
        padded[: pixels.shape[0], : pixels.shape[1]] = pixels
        pixels = padded
    uniform = np.ones((rows, cols), bool)
    same, empty = np.empty((rows, cols), bool), np.empty((rows, cols), bool)
    for dy in range(stride):
        for dx in range(stride):
            part = pixels[dy::stride, dx::stride]
            np.equal(part, seeds, out=same)
            np.equal(part, 0, out=empty)
            same |= empty
            uniform &= same
    ids = np.where(uniform & (seeds <= segments), seeds, 0)
    y, x = np.nonzero(~uniform)
    shares = np.zeros((len(y), segments), np.float32)
    if len(y):
        blocks = pixels.reshape(rows, stride, cols, stride)
        values = blocks[y, :, x, :].reshape(len(y), stride * stride).astype(np.intp)
        values[values > segments] = 0  # ids beyond K are refused before; never counted here
        values += (np.arange(len(y)) * (segments + 1))[:, None]
        counts = np.bincount(values.ravel(), minlength=len(y) * (segments + 1)).reshape(len(y), segments + 1)
        shares = counts[:, 1:].astype(np.float32)
        total = shares.sum(axis=1)
        shares /= np.where(total > 0, total, np.float32(1))[:, None]
    return LabelShares(ids, y, x, shares)


def prior(features, shares, usable, model, rows, out):
    """p0 of the block rows ``rows`` into ``out`` (K, h, w) float32: features (C, h, w) float32, shares from
    ``label_shares``."""
    values = features[:, rows]
    logits = out[:, rows]
    height, width = values.shape[1:]
    factor = np.float32(-1.0 / (model.temperature * model.scale2))
    difference = np.empty((height, width), np.float32)
    for segment, centre in enumerate(model.centres):
        total = logits[segment]
        if not np.isfinite(centre).all():
            total.fill(-np.inf)
            continue
        total.fill(0)
        for channel, value in enumerate(centre):
            np.subtract(values[channel], np.float32(value), out=difference)
            np.multiply(difference, difference, out=difference)
            total += difference
        total *= factor
    top = logits.max(axis=0)
    logits -= top
    np.exp(logits, out=logits)
    normaliser = logits.sum(axis=0)
    normaliser /= np.float32(1.0 - model.label_share)
    logits /= normaliser
    share = np.float32(model.label_share)
    ids = shares.uniform[rows]
    y, x = np.nonzero(ids)
    logits[ids[y, x].astype(np.intp) - 1, y, x] += share
    top_row = rows.indices(features.shape[1])[0]
    inside = (shares.rows >= top_row) & (shares.rows < top_row + height)
    if inside.any():
        logits[:, shares.rows[inside] - top_row, shares.cols[inside]] += (shares.shares[inside] * share).T
    logits *= usable[rows]  # blocks without a label or features: no score (they are not refined)


def _positive(offsets):
    """The offsets whose weights are computed; the others are their mirror images (same pair of blocks)."""
    return [(dy, dx) for dy, dx in offsets if dy > 0 or (dy == 0 and dx > 0)]


def raw_weights(features, usable, model, rows, out):
    """Unnormalised weights of the links of the block rows ``rows`` at the positive offsets into ``out``
    (N/2, h, w) float32 (0 for links to blocks outside the window or not usable)."""
    channels, height, width = features.shape
    top, bottom = rows.indices(height)[:2]
    factor = np.float32(-1.0 / (2.0 * model.bandwidth**2 * model.scale2))
    spatial = -(model.spatial_weight**2) / (2.0 * model.bandwidth**2)
    for number, (dy, dx) in enumerate(_positive(model.offsets)):
        plane = out[number, top:bottom]
        plane.fill(0)
        y0, y1 = top, min(bottom, height - dy)  # dy >= 0: rows whose neighbour is inside the window
        x0, x1 = max(0, -dx), min(width, width - dx)
        if y0 >= y1 or x0 >= x1:
            continue
        target = plane[: y1 - y0, x0:x1]
        difference = np.empty_like(target)
        for channel in range(channels):
            np.subtract(features[channel, y0:y1, x0:x1], features[channel, y0 + dy : y1 + dy, x0 + dx : x1 + dx],
                        out=difference)
            np.multiply(difference, difference, out=difference)
            target += difference
        target *= factor
        target += np.float32(spatial * (dy * dy + dx * dx))
        np.exp(target, out=target)
        target *= usable[y0:y1, x0:x1]
        target *= usable[y0 + dy : y1 + dy, x0 + dx : x1 + dx]


def _mirror(raw, positive, dy, dx, rows, width):
    """The weights at offset (dy, dx) of the block rows ``rows`` as a list of (target slice, source view) pieces:
    for a positive offset its own plane, for a negative one the mirrored plane shifted (0 where absent)."""
    height = raw.shape[1]
    top, bottom = rows.indices(height)[:2]
    if (dy, dx) in positive:
        return [((slice(0, bottom - top), slice(0, width)), raw[positive.index((dy, dx)), top:bottom])]
    plane = raw[positive.index((-dy, -dx))]
    y0, y1 = max(top, -dy), min(bottom, height - dy)
    x0, x1 = max(0, -dx), min(width, width - dx)
    if y0 >= y1 or x0 >= x1:
        return []
    return [((slice(y0 - top, y1 - top), slice(x0, x1)), plane[y0 + dy : y1 + dy, x0 + dx : x1 + dx])]


def normalise_weights(raw, model, rows, out, rest):
    """Link weights of the block rows ``rows`` divided by their sum and times MIX into ``out`` (N, h, w); ``rest``
    (h, w) gets 1 - MIX (1 for a block without links)."""
    positive = _positive(model.offsets)
    height, width = raw.shape[1:]
    top, bottom = rows.indices(height)[:2]
    planes = out[:, top:bottom]
    planes.fill(0)
    for number, (dy, dx) in enumerate(model.offsets):
        for (ys, xs), source in _mirror(raw, positive, dy, dx, rows, width):
            planes[number][ys, xs] = source
    total = planes.sum(axis=0)
    linked = total > 0
    scale = np.divide(np.float32(model.mix), total, out=np.zeros_like(total), where=linked)
    planes *= scale
    rest[top:bottom] = np.where(linked, np.float32(1.0 - model.mix), np.float32(1.0))


def propagate_rows(source, kept, weights, offsets, rows, out):
    """One propagation step for the block rows ``rows``: out = kept + sum_o weights_o x source(shifted by o)."""
    segments, height, width = source.shape
    top, bottom = rows.indices(height)[:2]
    target = out[:, top:bottom]
    np.copyto(target, kept[:, top:bottom])
    product = np.empty((segments, bottom - top, width), np.float32)
    for number, (dy, dx) in enumerate(offsets):
        y0, y1 = max(top, -dy), min(bottom, height - dy)
        x0, x1 = max(0, -dx), min(width, width - dx)
        if y0 >= y1 or x0 >= x1:
            continue
        part = product[:, : y1 - y0, : x1 - x0]
        np.multiply(source[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx], weights[number, y0:y1, x0:x1], out=part)
        target[:, y0 - top : y1 - top, x0:x1] += part


def refine_window(features, shares, usable, model, mapper=map):
    """Refined scores q (K, h, w) float32 of one window's blocks (exact at least ``model.halo - 1`` blocks inside
    a cut side of the window)."""
    segments, (height, width) = model.segments, usable.shape
    features = np.where(usable, features, np.float32(0))  # NaN features of unusable blocks never reach a sum
    p0 = np.empty((segments, height, width), np.float32)
    raw = np.empty((len(_positive(model.offsets)), height, width), np.float32)
    weights = np.empty((len(model.offsets), height, width), np.float32)
    rest = np.empty((height, width), np.float32)

    def start(rows):
        prior(features, shares, usable, model, rows, p0)
        raw_weights(features, usable, model, rows, raw)

    map_rows(height, start, mapper)
    map_rows(height, lambda rows: normalise_weights(raw, model, rows, weights, rest), mapper)
    raw = None  # free it before the propagation's buffers
    kept = p0 * rest
    buffers = (np.empty_like(p0), np.empty_like(p0)) if model.iterations else ()
    current = p0
    for step in range(model.iterations):
        following = buffers[step % 2]
        map_rows(height, lambda rows, source=current, out=following: propagate_rows(
            source, kept, weights, model.offsets, rows, out), mapper)
        current = following
    return current


def best_ids(scores, usable, dtype):
    """Id (1..K) of the highest score of each block (the lowest id among equals), 0 where not usable."""
    best = scores[0].copy()
    ids = np.ones(best.shape, dtype)
    better = np.empty(best.shape, bool)
    for segment in range(1, len(scores)):
        np.greater(scores[segment], best, out=better)
        np.copyto(best, scores[segment], where=better)
        np.copyto(ids, dtype(segment + 1), where=better)
    ids[~usable] = 0
    return ids


def pixel_labels(scores, usable, stride, core, dtype, mapper=map):
    """Labels (ids 1..K, 0 where a block is not usable) of the pixels of the blocks ``core`` = (top, bottom,
    left, right) of ``scores`` (K, h, w): each pixel takes the id with the highest score interpolated bilinearly
    between the centres of the four blocks around it. Blocks beyond the window's arrays are the raster's edge
    (the edge block is repeated); next to a block that is not usable a pixel takes its own block's id.

    Where the four blocks have the same best id the interpolation cannot change it (a convex combination keeps
    the order), so only pixels between blocks of different ids are interpolated.
    """
    segments, height, width = scores.shape
    top, bottom, left, right = core
    best = np.empty((height, width), dtype)

    def best_rows(rows):
        best[rows] = best_ids(scores[:, rows], usable[rows], dtype)

    map_rows(height, best_rows, mapper)
    result = np.empty(((bottom - top) * stride, (right - left) * stride), dtype)
    map_rows(bottom - top, lambda rows: _pixel_band(scores, usable, best, stride, core, rows, result), mapper)
    return result


def _pixel_band(scores, usable, best, stride, core, band, result):
    """``pixel_labels`` of the core block rows ``band`` (relative to the core's top) into ``result``."""
    segments, height, width = scores.shape
    core_top, _, left, right = core
    top, bottom = core_top + band.start, core_top + band.stop
    ids = best[top:bottom, left:right]
    out = result[band.start * stride : band.stop * stride]
    out[:] = np.repeat(np.repeat(ids, stride, axis=0), stride, axis=1)
    if segments == 1 or stride == 1:
        return
    flat = scores.reshape(segments, -1)
    phases = cell_phases(stride)
    rows, cols = np.arange(top, bottom), np.arange(left, right)
    one = np.float32(1)
    for oy in (-1, 1):
        near_rows = np.clip(rows + oy, 0, height - 1)
        for ox in (-1, 1):
            near_cols = np.clip(cols + ox, 0, width - 1)
            vertical = best[near_rows][:, left:right]
            horizontal = best[top:bottom][:, near_cols]
            diagonal = best[near_rows][:, near_cols]
            # interpolate where a neighbour has another id; next to an unusable block keep the own id
            differ = (vertical != ids) | (horizontal != ids) | (diagonal != ids)
            y, x = np.nonzero(differ & (ids > 0) & (vertical > 0) & (horizontal > 0) & (diagonal > 0))
            if not len(y):
                continue
            cells = [flat[:, (y + top) * width + x + left], flat[:, near_rows[y] * width + x + left],
                     flat[:, (y + top) * width + near_cols[x]], flat[:, near_rows[y] * width + near_cols[x]]]
            value, part, inside = np.empty_like(cells[0]), np.empty_like(cells[0]), np.ones(len(y), bool)
            for qy, (phase_y, ay) in enumerate(phases):
                if phase_y != oy:
                    continue
                for qx, (phase_x, ax) in enumerate(phases):
                    if phase_x != ox:
                        continue
                    np.multiply(cells[0], (one - ay) * (one - ax), out=value)
                    for cell, weight in zip(cells[1:], (ay * (one - ax), (one - ay) * ax, ay * ax)):
                        np.multiply(cell, weight, out=part)
                        value += part
                    out[y * stride + qy, x * stride + qx] = best_ids(value, inside, best.dtype.type)
