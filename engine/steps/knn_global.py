"""Latent KNN refinement, the earlier global formulation (``method="predecessor"``): the predecessor's method, made
exact, streaming and independent of feature units (its defaults: ``PREDECESSOR_DEFAULTS``).

Points are the blocks, embedded as [f / s, w x, w y] (x, y in [-1, 1] over the raster, w = SPATIAL_WEIGHT); an index
of INDEX_SIZE blocks (a quota per segment proportional to its size) is searched with SciPy's cKDTree. Every block
starts with p = 0.5 softmax(-||f - c||^2 / (T s^2)) + 0.5 onehot(seed); the index posteriors are iterated
P_t = (1 - mix) P_(t-1) + mix mean(P_(t-1) over the k nearest index points), and every block's
p_t = (1 - mix) p_(t-1) + mix mean(P_(t-1) over its k nearest index points); its new label is argmax + 1, handed
only to the pixels that carried its old label. It runs in this process only.
"""

from dataclasses import dataclass

import numpy as np

from ..segmentation.sampling import BlockSample
from .knn_common import Inputs, ScanStep, _Grid, label_dtype, scan, write_windows
from .neighbours import NeighbourIndex, require_ckdtree
from .window_step import Executor

PREDECESSOR_DEFAULTS = dict(neighbors=12, temperature=2.0, mix=0.65, iterations=2, spatial_weight=0.08,
                            index_size=120_000)
CHUNK = 32768  # query points per batch (for K <= 8; fewer for more segments): bounds the temporaries, keeps
# cancel responsive (a batch takes about 0.25 s) and gives each thread of the pool its share of work
STAGES = [("Counting segments", 2), ("Sampling the index", 3), ("Iterating the index", 2), ("Refining blocks", 93)]


@dataclass
class _Model:
    centres: np.ndarray  # (K, C) float64, NaN rows for ids without a centre
    scale2: float
    temperature: float
    spatial_weight: float
    mix: float
    neighbours: int
    grid: _Grid
    index: NeighbourIndex = None
    posteriors: list = None  # P_0 .. P_(iterations - 1), each (n, K) float32


def _window_pixels(memory_mb, stride, channels, label_bytes):
    """Label pixels per window: label copies per pixel plus feature values per block."""
    per_pixel = 6 * label_bytes + 3 + (channels * 12 + 48) / (stride * stride)
    return max(stride * stride, int(memory_mb * 2**20 / per_pixel))


def _quotas(counts, size):
    """Index points per segment: proportional to ``counts`` (largest remainders), at least one per segment."""
    total = int(counts.sum())
    if total <= size:
        return counts.copy()
    quotas = counts * size // total
    remainders = counts * size - quotas * total
    order = np.lexsort((np.arange(len(counts)), -remainders))
    quotas[order[: size - int(quotas.sum())]] += 1
    for segment in np.flatnonzero((counts > 0) & (quotas == 0)):
        quotas[int(np.argmax(quotas))] -= 1
        quotas[segment] = 1
    return np.minimum(quotas, counts)


def _sample(reader, windows, quotas, seed, progress):
    """The index: per segment, the ``quota`` usable blocks with the smallest hash keys; sorted by cell."""
    samplers = {segment: BlockSample(quota, seed) for segment, quota in enumerate(quotas, start=1) if quota > 0}
    for number, window in enumerate(windows):
        linear, seeds, _, _, values, _ = reader.cells(window)
        order = np.argsort(seeds, kind="stable")
        bounds = np.searchsorted(seeds[order], np.arange(len(quotas) + 2))
        for segment, sampler in samplers.items():
            chosen = order[bounds[segment] : bounds[segment + 1]]
            if len(chosen):
                vectors = np.concatenate([linear[chosen, None].astype(np.float64), values[:, chosen].T], axis=1)
                sampler.offer(linear[chosen], vectors)
        reader.release_cache()
        progress.update((number + 1) / len(windows), f"Sampling the index ({number + 1}/{len(windows)} windows)")
    parts = [(np.full(len(s), segment, np.int64), s.vectors) for segment, s in samplers.items() if len(s)]
    seeds = np.concatenate([p[0] for p in parts])
    vectors = np.concatenate([p[1] for p in parts])
    order = np.argsort(vectors[:, 0], kind="stable")
    linear = vectors[order, 0].astype(np.int64)
    rows, cols = np.divmod(linear, reader.grid.grid_w)
    return np.ascontiguousarray(vectors[order, 1:].T, np.float32), seeds[order], rows, cols


# ---------------------------------------------------------------- per-point numerics


def _scale2(features, seeds, centres):
    """Mean squared distance of the index points to their own segment's centre (1 if degenerate)."""
    distance = np.zeros(features.shape[1])
    own = centres[seeds - 1]
    for channel in range(features.shape[0]):
        difference = features[channel].astype(np.float64) - own[:, channel]
        distance += difference * difference
    scale2 = float(np.mean(distance))
    return scale2 if np.isfinite(scale2) and scale2 > 0 else 1.0


def embed(features, rows, cols, model):
    """Points (m, C + 2) for the neighbour search: features / s, then w x and w y (x, y in [-1, 1])."""
    grid = model.grid
    channels = features.shape[0]
    points = np.empty((features.shape[1], channels + 2))
    scale = np.sqrt(model.scale2)
    for channel in range(channels):
        points[:, channel] = features[channel].astype(np.float64) / scale
    points[:, channels] = ((2 * cols + 1) / grid.grid_w - 1.0) * model.spatial_weight
    points[:, channels + 1] = ((2 * rows + 1) / grid.grid_h - 1.0) * model.spatial_weight
    return points


def initial_posteriors(features, seeds, centres, scale2, temperature):
    """p (m, K) float32 = 0.5 softmax(-||f - c||^2 / (T s^2)) + 0.5 onehot(seed); centres with NaN get 0."""
    count = features.shape[1]
    columns = [features[channel].astype(np.float64) for channel in range(features.shape[0])]
    logits = np.full((len(centres), count), -np.inf)
    divisor = temperature * scale2
    for segment, centre in enumerate(centres):
        if not np.isfinite(centre).all():
            continue
        distance = np.zeros(count)
        for column, value in zip(columns, centre):
            difference = column - value
            difference *= difference
            distance += difference
        logits[segment] = -(distance / divisor)
    best = logits[0].copy()
    for row in logits[1:]:
        np.maximum(best, row, out=best)
    total = np.zeros(count)
    for row in logits:
        row -= best
        np.exp(row, out=row)
        total += row
    posteriors = np.empty((count, len(centres)), np.float32)
    for segment, row in enumerate(logits):
        posteriors[:, segment] = 0.5 * (row / total) + 0.5 * (seeds == segment + 1)
    return posteriors


def smooth(posteriors, neighbours, index_posteriors, mix):
    """(1 - mix) p + mix * mean of the index posteriors over each point's neighbours (fixed order, float32)."""
    total = np.take(index_posteriors, neighbours[:, 0], axis=0)
    gathered = np.empty_like(total)
    for column in range(1, neighbours.shape[1]):
        np.take(index_posteriors, neighbours[:, column], axis=0, out=gathered)
        total += gathered
    total *= np.float32(mix / neighbours.shape[1])
    result = posteriors * np.float32(1.0 - mix)
    result += total
    return result


def _in_order(pool, function, chunks, progress, fraction, message):
    """``function`` over ``chunks`` on the thread pool; results in order, progress and cancel between them."""
    jobs = [pool.submit(function, *chunk) for chunk in chunks]
    try:
        for number, job in enumerate(jobs):
            yield job.result()
            progress.update(fraction(number + 1, len(jobs)), message)
    finally:
        for job in jobs:
            job.cancel()


def _query_chunk(points, neighbours):
    """Query points per batch: the tree's answers take 16 bytes per point and neighbour, so batches shrink as
    NEIGHBORS grows (the default 12 keeps the full batch)."""
    return max(256, points * 12 // max(neighbours, 12))


def _fit_index(model, features, seeds, rows, cols, iterations, pool, progress):
    """Build the neighbour index and the index posteriors P_0 .. P_(iterations - 1)."""
    points = embed(features, rows, cols, model)
    model.index = NeighbourIndex(points, workers=1)  # one thread per query batch: the pool runs batches in parallel
    posteriors = initial_posteriors(features, seeds, model.centres, model.scale2, model.temperature)
    model.posteriors = [posteriors]
    if iterations <= 1:
        progress.update(1.0)
        return
    neighbours = np.empty((len(points), model.neighbours), np.int32)
    chunk = _query_chunk(CHUNK, model.neighbours)
    starts = range(0, len(points), chunk)
    found = _in_order(pool, model.index.query, [(points[start : start + chunk], model.neighbours) for start in starts],
                      progress, lambda done, total: 0.9 * done / total, "Iterating the index (neighbours)")
    for start, part in zip(starts, found):
        neighbours[start : start + chunk] = part
    for _ in range(1, iterations):
        posteriors = smooth(posteriors, neighbours, posteriors, model.mix)
        model.posteriors.append(posteriors)
    progress.update(1.0)


def refine_points(features, seeds, rows, cols, model, iterations):
    """New labels (1..K) of the points: features (C, m) float32, seeds/rows/cols (m,)."""
    posteriors = initial_posteriors(features, seeds, model.centres, model.scale2, model.temperature)
    if iterations:
        neighbours = model.index.query(embed(features, rows, cols, model), model.neighbours)
        for step in range(iterations):
            posteriors = smooth(posteriors, neighbours, model.posteriors[step], model.mix)
    return np.argmax(posteriors, axis=1) + 1


# ---------------------------------------------------------------- refining


def _expand(grid, stride, window):
    return np.repeat(np.repeat(grid, stride, axis=0), stride, axis=1)[: window.height, : window.width]


def _refine_window(reader, window, model, iterations, dtype, pool, progress, number, count):
    """(labels of ``window``, pixels changed): each usable block's new label from its neighbours in the index."""
    stride = model.grid.stride
    pixels = reader.pixels(window)
    linear, seeds, rows, cols, values, grid_seeds = reader.cells(window, pixels)
    refined = np.zeros(grid_seeds.size, dtype)
    cells = window.on_grid(stride)
    local = (rows - cells.yoff) * grid_seeds.shape[1] + (cols - cells.xoff)
    chunk = _query_chunk(max(min(CHUNK, 1024), CHUNK * 8 // max(len(model.centres), 8)), model.neighbours)
    parts = [slice(start, start + chunk) for start in range(0, len(seeds), chunk)]
    found = _in_order(pool, refine_points,
                      [(values[:, part], seeds[part], rows[part], cols[part], model, iterations) for part in parts],
                      progress, lambda done, total: (number + done / total) / count,
                      f"Refining blocks ({number + 1}/{count} windows)")
    for part, labels in zip(parts, found):
        refined[local[part]] = labels
    # A block whose label changed hands the new label to the pixels that carried its old one; pixels of other
    # ids (boundaries drawn at pixel level, e.g. by segmenter:blur) and unchanged blocks keep theirs.
    changed = np.where((refined > 0) & (refined != grid_seeds.ravel()), refined, 0).reshape(grid_seeds.shape)
    new = _expand(changed, stride, window)
    result = np.where((new > 0) & (pixels == _expand(grid_seeds, stride, window)), new, pixels).astype(dtype)
    reader.release_cache()
    return result, int(np.count_nonzero(result != pixels))


class GlobalFormulation:
    """The earlier global formulation of ``refine_knn`` over ``inputs`` (a ``knn_common.Inputs``): ``windows``,
    ``scan``, ``fit`` and ``refine`` in this order, then ``close``."""

    def __init__(self, inputs: Inputs):
        require_ckdtree()  # the graph formulation needs numpy and GDAL only
        self.inputs, self.settings = inputs, inputs.settings
        self.model = self.counts = None
        if self.settings.scheduler:
            inputs.progress.warn("The earlier formulation (METHOD 1) runs in this process only: SCHEDULER is not "
                                 "used.")

    def windows(self):
        inputs = self.inputs
        inputs.progress.plan(STAGES)
        inputs.progress.start("Counting segments")
        return inputs.plan_windows(_window_pixels(self.settings.memory_mb, inputs.grid.stride, inputs.channels,
                                                  inputs.label_bytes))

    def scan(self, windows):
        """Usable blocks per id and, when recomputing centres, exact feature sums per id."""
        inputs = self.inputs
        step = ScanStep(self.settings.labels_path, self.settings.features_path, inputs.grid, inputs.recompute,
                        inputs.segments)
        with Executor(None, inputs.progress, self.settings.memory_mb) as executor:
            return scan(executor.map(step, windows, inputs.reader), inputs.recompute)

    def fit(self, windows, centres, counts, recomputed, pool):
        """Sample the index (quotas per segment from ``counts``), then iterate its posteriors on ``pool``; (index
        points, s^2, the run's ``knn`` metadata)."""
        inputs, settings, progress = self.inputs, self.settings, self.inputs.progress
        progress.start("Sampling the index")
        index_features, index_seeds, index_rows, index_cols = _sample(
            inputs.reader, windows, _quotas(counts, settings.index_size), settings.seed, progress)
        self.model = _Model(centres=centres, scale2=_scale2(index_features, index_seeds, centres),
                            temperature=settings.temperature, spatial_weight=settings.spatial_weight,
                            mix=settings.mix, neighbours=min(settings.neighbors, len(index_seeds)), grid=inputs.grid)
        index_points, scale2 = len(index_seeds), self.model.scale2
        progress.log(f"Index: {index_points} points; feature scale s^2 = {scale2:.6g}")
        knn = dict(method="predecessor", neighbors=settings.neighbors, temperature=settings.temperature,
                   mix=settings.mix, iterations=settings.iterations, spatial_weight=settings.spatial_weight,
                   index_size=settings.index_size, index_points=index_points, scale2=scale2,
                   centres="recomputed" if recomputed else "metadata")
        progress.start("Iterating the index")
        _fit_index(self.model, index_features, index_seeds, index_rows, index_cols, settings.iterations, pool,
                   progress)
        return index_points, scale2, knn

    def refine(self, windows, output, pool):
        """Refine the windows in this process and write them in order; the pixels changed. Not a window step: every
        window queries the one global index (query batches on ``pool``), which stays in this process."""
        inputs, dtype, count = self.inputs, label_dtype(output), len(windows)

        def refined():
            for number, window in enumerate(windows):
                yield window, _refine_window(inputs.reader, window, self.model, self.settings.iterations, dtype, pool,
                                             inputs.progress, number, count)
                inputs.progress.update((number + 1) / count, f"Refining blocks ({number + 1}/{count} windows)")

        return write_windows(refined(), output)

    def close(self):
        pass
