"""Latent KNN refinement: each block revises its segment from the blocks that look like it.

Two formulations share the checks, the reading of LABELS and FEATURES and the writing of the output:

``method="graph"`` (the default; numerics in ``latent_graph``): edge-aware label propagation on the block grid.
1. One pass ("Sampling the index") checks the ids, counts the usable blocks (a seed label: the first non-zero
   pixel of the block in row-major order, and valid features), sums their features exactly when the centres
   must be recomputed, and draws the index: the INDEX_SIZE usable blocks with the smallest seeded hash keys
   (``sampling.BlockSample``, the same whatever the windows) with the ids of their right and lower neighbours.
2. Calibration on the index: s^2 = mean ||f - c_seed||^2, and the temperature whose softmax(-||f - c||^2 /
   (T s^2)) best predicts the neighbours' ids (``latent_graph.fit_temperature``); TEMPERATURE multiplies it.
3. Window by window, each grown by ITERATIONS x (graph radius) + 1 blocks: the prior of every block (half the
   calibrated softmax, half the shares of the ids among its pixels), the links to its NEIGHBORS nearest blocks
   weighted by likeness (features and, through SPATIAL_WEIGHT, position), ITERATIONS propagation steps with
   MIX, and each pixel's id from the scores interpolated bilinearly between block centres. Pixels that are 0
   stay 0; pixels of blocks without features keep their label; ITERATIONS = 0 returns LABELS unchanged.
Every value is computed element-wise in a fixed order, so tiled and untiled runs are byte-identical.

``method="predecessor"``: the predecessor's method, made exact, streaming and independent of feature units
(its defaults: ``PREDECESSOR_DEFAULTS``). Points are the blocks, embedded as [f / s, w x, w y] (x, y in [-1, 1]
over the raster, w = SPATIAL_WEIGHT); an index of INDEX_SIZE blocks (a quota per segment proportional to its
size) is searched with SciPy's cKDTree. Every block starts with p = 0.5 softmax(-||f - c||^2 / (T s^2)) +
0.5 onehot(seed); the index posteriors are iterated P_t = (1 - mix) P_(t-1) + mix mean(P_(t-1) over the k
nearest index points), and every block's p_t = (1 - mix) p_(t-1) + mix mean(P_(t-1) over its k nearest index
points); its new label is argmax + 1, handed only to the pixels that carried its old label.

Centres (both): the label raster's SEGMENTER_CENTRES (row i is the centre of id i + 1), or, when they are absent
or were fitted in another feature space, the mean features of each id, from exact sums (window-independent).
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, osr

from . import checks, distributed
from .colour_tables import table_colours
from .errors import InputError
from .feature_raster import FeatureRaster
from .labels import MAX_ID, LabelRaster, finish_label_raster, label_type
from .latent_graph import (
    GraphModel,
    fit_temperature,
    graph_offsets,
    label_shares,
    pixel_labels,
    refine_window,
    scale2_of,
    squared_distances,
)
from .memory import within_budget
from .neighbours import NeighbourIndex, require_ckdtree
from .outputs import Destination, prepare_outputs
from .palette import qualitative
from .progress import Progress
from .raster_io import AtomicRaster, scaled_geotransform
from .sampling import BlockSample, hash_keys
from .windows import Window, plan_windows

METHODS = ("graph", "predecessor")
# Defaults of the graph formulation (bench/eval_refine.py, bench/README.md)
NEIGHBORS = 8
TEMPERATURE = 1.0
MIX = 0.9
ITERATIONS = 8
SPATIAL_WEIGHT = 0.5
INDEX_SIZE = 50_000
# The predecessor's defaults, for method="predecessor"
PREDECESSOR_DEFAULTS = dict(neighbors=12, temperature=2.0, mix=0.65, iterations=2, spatial_weight=0.08,
                            index_size=120_000)
NEIGHBOUR_BYTES = 4  # int32 index of a neighbour in the table of the index points' neighbours
TABLE_MB = 256  # the neighbour table (INDEX_SIZE x NEIGHBORS) is kept whole: its cap, unless MEMORY_MB / 2 is more
CHUNK = 32768  # query points per batch (for K <= 8; fewer for more segments): bounds the temporaries, keeps
# cancel responsive (a batch takes about 0.25 s) and gives each thread of the pool its share of work
_EXACT_SHIFT = 148  # float32 v = M * 2**(e - 24), |M| < 2**24, e >= -148: v * 2**172 = M << (e + 148)


@dataclass
class KnnResult:
    output: str
    segments: int
    centres: np.ndarray
    centres_source: str
    index_points: int
    scale: float
    windows: int


@dataclass
class _Grid:
    """The label raster's pixel grid and the feature grid (stride r) laid on it."""

    width: int
    height: int
    stride: int
    grid_w: int
    grid_h: int


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


@within_budget
def refine_knn(
    labels_path,
    features_path,
    output_path,
    neighbors=NEIGHBORS,
    temperature=TEMPERATURE,
    mix=MIX,
    iterations=ITERATIONS,
    spatial_weight=SPATIAL_WEIGHT,
    seed=0,
    index_size=INDEX_SIZE,
    memory_mb=256,
    workers=-1,
    progress=None,
    method="graph",
    scheduler=None,
):
    """Refine ``labels_path`` by the blocks that look alike in ``features_path``; write ``output_path``.

    ``method``: "graph" (edge-aware label propagation, the default) or "predecessor" (the predecessor's global
    KNN among index points; its defaults are PREDECESSOR_DEFAULTS). ``workers``: threads (-1 = one per CPU);
    results do not depend on it. ``scheduler``: a Dask scheduler's address or a ``distributed.Client`` to refine
    the windows on (method "graph"; the workers read LABELS and FEATURES themselves: shared storage); None or
    empty: this process. The same bytes either way.
    """
    progress = progress or Progress()
    labels_path, features_path = checks.path("LABELS", labels_path), checks.path("FEATURES", features_path)
    output_path = checks.path("OUTPUT", output_path)
    neighbors, iterations = checks.whole("NEIGHBORS", neighbors), checks.whole("ITERATIONS", iterations)
    temperature, mix = checks.number("TEMPERATURE", temperature), checks.number("MIX", mix)
    spatial_weight, seed = checks.number("SPATIAL_WEIGHT", spatial_weight), checks.whole("SEED", seed, 0)
    index_size, workers = checks.whole("INDEX_SIZE", index_size), checks.whole("workers", workers, -1)
    memory_mb = checks.memory(memory_mb)
    threads = max(1, os.cpu_count() or 1) if workers == -1 else max(1, int(workers))
    if method not in METHODS:
        raise InputError(f"METHOD must be one of {', '.join(METHODS)}; got {method!r}.")
    _check_parameters(neighbors, temperature, mix, iterations, spatial_weight, index_size, memory_mb,
                      method == "predecessor")
    label_raster = LabelRaster.open(labels_path, "label raster (LABELS)",
                                    " (A segmentation's Float32 FEATURES raster goes to FEATURES.)")
    labels, label_band = label_raster.dataset, label_raster.band
    feature_raster = FeatureRaster.open(features_path)
    features = feature_raster.dataset
    reader = cluster = None
    try:
        feature_meta = feature_raster.meta
        grid = _check_grids(labels, features, labels_path, features_path, feature_meta)
        outputs = prepare_outputs({"LABELS": labels_path, "FEATURES": features_path},
                                  [Destination("OUTPUT", output_path, "labels")], progress)
        if method == "predecessor":
            require_ckdtree()  # the graph formulation needs numpy and GDAL only
        label_meta = label_raster.meta
        centres, segments, reason = _metadata_centres(label_meta, feature_meta, features.RasterCount)
        made_with = label_meta.features
        output_features = made_with.raw or feature_meta.raw or None
        if made_with.stride not in (None, grid.stride):
            progress.warn(f"LABELS were made on a grid of {made_with.stride} px but FEATURES has {grid.stride} px "
                          f"cells: the output follows the {grid.stride} px cells. Use the FEATURES of the run that "
                          f"made LABELS to keep its detail.")
            output_features = {**feature_meta.raw, "stride": grid.stride}

        label_bytes = gdal.GetDataTypeSize(label_band.DataType) // 8
        reader = _Reader(label_raster, feature_raster, grid)
        if method == "graph":
            offsets = graph_offsets(neighbors)
            cluster = distributed.connect(scheduler, progress, memory_mb)
            progress.plan([("Sampling the index", 8), ("Refining blocks", 92)])
            progress.start("Sampling the index")
            max_pixels = _graph_window_pixels(memory_mb, grid.stride, features.RasterCount, label_bytes,
                                              max(segments or 0, 8), len(offsets))
            windows = plan_windows(grid.width, grid.height, max_pixels, step=grid.stride,
                                   row_step=label_band.GetBlockSize()[1])
            _log_grid(progress, grid, features, windows)
            counts, sums, index = _scan(reader, windows, centres is None, segments, labels_path, index_size, seed,
                                        progress, cluster, features_path)
        else:
            if scheduler:
                progress.warn("The earlier formulation (METHOD 1) runs in this process only: SCHEDULER is not used.")
            progress.plan([("Counting segments", 2), ("Sampling the index", 3), ("Iterating the index", 2),
                           ("Refining blocks", 93)])
            progress.start("Counting segments")
            max_pixels = _window_pixels(memory_mb, grid.stride, features.RasterCount, label_bytes)
            windows = plan_windows(grid.width, grid.height, max_pixels, step=grid.stride,
                                   row_step=label_band.GetBlockSize()[1])
            _log_grid(progress, grid, features, windows)
            counts, sums = _count(reader, windows, centres is None, segments, labels_path, progress)
        if not counts.sum():
            detail = " so the segment centres cannot be recomputed either" if centres is None else ""
            raise InputError(
                f"No block has both a segment id in LABELS '{labels_path}' and valid values in FEATURES "
                f"'{features_path}'{detail}. Choose the FEATURES written by the same run as LABELS."
            )
        if centres is None:
            segments = max(segments or 0, len(counts) - 1)
            centres = sums.means(counts, segments, features.RasterCount)
            progress.log(f"Segment centres recomputed as mean features per segment ({reason}).")
        else:
            progress.log("Segment centres read from the LABELS metadata.")
        counts = np.pad(counts, (0, segments + 1 - len(counts)))[1:]

        if method == "graph":
            model, fitted = _calibrate(index, centres, offsets, temperature, mix, iterations, spatial_weight)
            index_points, scale2 = len(index[1]), model.scale2
            progress.log(f"Index: {index_points} blocks; feature scale s^2 = {scale2:.6g}; fitted temperature "
                         f"{fitted:.4g} (x TEMPERATURE {temperature:g}); {len(offsets)} neighbours per block, halo "
                         f"{model.halo} blocks")
            knn = dict(method="graph", neighbors=neighbors, links=len(offsets), temperature=temperature,
                       fitted_temperature=fitted, mix=mix, iterations=iterations, spatial_weight=spatial_weight,
                       index_size=index_size, index_points=index_points, scale2=scale2,
                       centres="metadata" if reason is None else "recomputed")
        else:
            progress.start("Sampling the index")
            index_features, index_seeds, index_rows, index_cols = _sample(
                reader, windows, _quotas(counts, index_size), seed, progress)
            model = _Model(centres=centres, scale2=_scale2(index_features, index_seeds, centres),
                           temperature=temperature, spatial_weight=spatial_weight, mix=mix,
                           neighbours=min(neighbors, len(index_seeds)), grid=grid)
            index_points, scale2 = len(index_seeds), model.scale2
            progress.log(f"Index: {index_points} points; feature scale s^2 = {scale2:.6g}")
            knn = dict(method="predecessor", neighbors=neighbors, temperature=temperature, mix=mix,
                       iterations=iterations, spatial_weight=spatial_weight, index_size=index_size,
                       index_points=index_points, scale2=scale2,
                       centres="metadata" if reason is None else "recomputed")

        with ThreadPoolExecutor(threads) as pool:
            if method == "predecessor":
                progress.start("Iterating the index")
                _fit_index(model, index_features, index_seeds, index_rows, index_cols, iterations, pool, progress)
            colours, names = _style(label_band, label_meta, segments)
            output = AtomicRaster(output_path, grid.width, grid.height, 1, label_type(segments),
                                  labels.GetGeoTransform(can_return_null=True), labels.GetProjection(),
                                  palette=colours or qualitative(segments), gcps_from=labels, group=outputs)
            with outputs, output:
                progress.start("Refining blocks")
                if cluster is not None:
                    changed = _refine_graph_on_cluster(cluster, labels_path, features_path, grid, windows, model,
                                                       output, progress)
                elif method == "graph":
                    changed = _refine_graph(reader, windows, model, output, pool.map if threads > 1 else map,
                                            progress)
                    share = 100 * changed / max(1, grid.width * grid.height)
                    progress.log(f"Refinement changed {changed} of {grid.width * grid.height} pixels ({share:.1f} %).")
                else:
                    _refine(reader, windows, model, iterations, output, pool, progress)
                finish_label_raster(output, segments, dict(
                    method="knn_refine", seed=seed,
                    centres=[[None if not np.isfinite(v) else float(v) for v in row] for row in centres],
                    features=output_features,
                    knn=knn,
                    refined_from=dict(method=label_meta.method, labels=os.path.basename(labels_path),
                                      features=os.path.basename(features_path)),
                    # the merge tree (ids unchanged) and the choice of K, so segmenter:merge can re-cut the result
                    **{key: label_meta.raw[key] for key in ("sizes", "merges", "criterion") if key in label_meta.raw},
                ), colours=colours, names=names)
                outputs.commit()
    finally:
        label_raster.close()  # close the inputs even when a traceback keeps this frame
        reader = labels = features = feature_raster = label_band = None
        if cluster is not None:
            cluster.close()
    return KnnResult(output_path, segments, centres, "metadata" if reason is None else "recomputed",
                     index_points, scale2, len(windows))


def _log_grid(progress, grid, features, windows):
    progress.log(f"{grid.width} x {grid.height} px, feature grid {grid.grid_w} x {grid.grid_h} (stride "
                 f"{grid.stride}), {features.RasterCount} feature channels, {len(windows)} windows")


# ---------------------------------------------------------------- checks


def _check_parameters(neighbors, temperature, mix, iterations, spatial_weight, index_size, memory_mb, table=True):
    if not 1 <= neighbors <= 1000:
        raise InputError(f"NEIGHBORS must be between 1 and 1000; got {neighbors}.")
    if not temperature > 0 or not np.isfinite(temperature):
        raise InputError(f"TEMPERATURE must be greater than 0; got {temperature}.")
    if not 0 <= mix <= 1:
        raise InputError(f"MIX must be between 0 and 1; got {mix}.")
    if not 0 <= iterations <= 100:
        raise InputError(f"ITERATIONS must be between 0 and 100; got {iterations}.")
    if not spatial_weight >= 0 or not np.isfinite(spatial_weight):
        raise InputError(f"SPATIAL_WEIGHT must be 0 or more; got {spatial_weight}.")
    if index_size < 1:
        raise InputError(f"INDEX_SIZE must be at least 1; got {index_size}.")
    table_mb = index_size * neighbors * NEIGHBOUR_BYTES / 2**20
    allowed = max(TABLE_MB, memory_mb / 2) if memory_mb > 0 else TABLE_MB
    if table and iterations > 1 and table_mb > allowed:
        raise InputError(
            f"NEIGHBORS {neighbors} x INDEX_SIZE {index_size} needs a {table_mb:.0f} MB neighbour table (at most "
            f"{allowed:.0f} MB: {TABLE_MB} MB, or half of MEMORY_MB when that is more). Lower NEIGHBORS or "
            f"INDEX_SIZE, or raise MEMORY_MB to {2 * table_mb:.0f}."
        )
    if not memory_mb > 0:
        raise InputError(f"MEMORY_MB must be greater than 0; got {memory_mb}.")


def _same_crs(first, second):
    if not first or not second:
        return not first and not second
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(first)
    b.ImportFromWkt(second)
    return bool(a.IsSame(b))


def _check_grids(labels, features, labels_path, features_path, feature_meta):
    """The feature grid must be the label grid scaled by the stride: same origin and CRS, sizes rounded up."""
    width, height = labels.RasterXSize, labels.RasterYSize
    label_gt = labels.GetGeoTransform(can_return_null=True)
    feature_gt = features.GetGeoTransform(can_return_null=True)
    stride = feature_meta.stride
    if stride is None:
        if label_gt is None or feature_gt is None or not label_gt[1]:
            raise InputError(
                f"FEATURES '{features_path}' does not say its stride (SEGMENTER_STRIDE metadata) and is not "
                f"georeferenced, so its grid cannot be laid on LABELS. Choose the FEATURES written by "
                f"segmenter:kmeans."
            )
        stride = max(1, int(round(feature_gt[1] / label_gt[1])))
    cell_grid = Window.whole(width, height).on_grid(stride)
    grid = _Grid(width, height, stride, cell_grid.width, cell_grid.height)
    problems = []
    if (features.RasterXSize, features.RasterYSize) != (grid.grid_w, grid.grid_h):
        problems.append(f"with stride {stride} it should be {grid.grid_w} x {grid.grid_h} cells, it is "
                        f"{features.RasterXSize} x {features.RasterYSize}")
    if (label_gt is None) != (feature_gt is None):
        problems.append("one of them is georeferenced and the other is not")
    elif label_gt is not None:
        expected = scaled_geotransform(label_gt, stride)
        tolerance = 1e-3 * max(abs(label_gt[1]), abs(label_gt[5]), 1e-12)
        if any(abs(a - b) > tolerance for a, b in zip(feature_gt, expected)):
            problems.append(f"its geotransform is {tuple(feature_gt)}, LABELS' scaled by {stride} is {expected} "
                            f"(different extent or resolution)")
    if not _same_crs(labels.GetProjection(), features.GetProjection()):
        problems.append("their CRS differ")
    if problems:
        raise InputError(
            f"LABELS '{labels_path}' and FEATURES '{features_path}' are not on matching grids: "
            f"{'; '.join(problems)}. Choose the LABELS and FEATURES written by the same segmentation run."
        )
    return grid


def _metadata_centres(label_meta, feature_meta, channels):
    """(centres, K, None) from the LABELS metadata when they fit FEATURES, else (None, K or None, reason)."""
    segments = label_meta.k
    raw = label_meta.centres
    if raw is None:
        return None, segments, "LABELS has no centres in its metadata"
    try:
        centres = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        return None, segments, "the centres in the LABELS metadata are unreadable"
    if centres.ndim != 2 or not np.isfinite(centres).all() or len(centres) < 1:
        return None, segments, "the centres in the LABELS metadata are unreadable"
    if centres.shape[1] != channels:
        return None, segments, f"its centres have {centres.shape[1]} channels, FEATURES has {channels}"
    for key in ("kind", "stride", "names"):
        made_with, features_have = getattr(label_meta.features, key), getattr(feature_meta, key)
        if made_with is not None and features_have is not None and made_with != features_have:
            return None, segments, f"its centres were fitted on other features ({key} {made_with!r})"
    if segments is not None and segments != len(centres):
        return None, segments, f"it has {len(centres)} centres for K = {segments}"
    return centres, len(centres), None


def _window_pixels(memory_mb, stride, channels, label_bytes):
    """Label pixels per window: label copies per pixel plus feature values per block."""
    per_pixel = 6 * label_bytes + 3 + (channels * 12 + 48) / (stride * stride)
    return max(stride * stride, int(memory_mb * 2**20 / per_pixel))


# ---------------------------------------------------------------- reading


def block_seeds(pixels, stride):
    """Seed label of each ``stride`` x ``stride`` block: its first non-zero pixel in row-major order, else 0.

    ``pixels`` (h, w) starts at a block corner; partial blocks at the right and bottom use the pixels they have.
    """
    height, width = pixels.shape
    seeds = pixels[::stride, ::stride].copy()
    rows, cols = np.nonzero(seeds == 0)
    if len(rows) and stride > 1:
        found = np.zeros(len(rows), seeds.dtype)
        for dy in range(stride):
            for dx in range(stride):
                if not (dy or dx):
                    continue
                y, x = rows * stride + dy, cols * stride + dx
                look = (found == 0) & (y < height) & (x < width)
                found[look] = pixels[y[look], x[look]]
        seeds[rows, cols] = found
    return seeds


class _Reader:
    """Windows of LABELS (pixels, block seeds) and of FEATURES (the matching cells), nodata made explicit."""

    def __init__(self, labels, features, grid):
        self.labels, self.features, self.grid = labels, features, grid

    def pixels(self, window):
        return self.labels.read(window)

    def cells(self, window, pixels=None):
        """The window's usable cells (a seed label and valid features): linear index, seed, row, col (m,),
        features (C, m) float32; and the seeds of all its cells (rows, cols)."""
        stride = self.grid.stride
        seeds = block_seeds(self.pixels(window) if pixels is None else pixels, stride)
        rows, cols = seeds.shape
        cells = window.on_grid(stride)
        values = self.features.read(cells).reshape(-1, rows * cols)
        usable = (seeds.reshape(-1) > 0) & self.features.usable(values)
        position = np.flatnonzero(usable)
        row = position // cols + cells.yoff
        col = position % cols + cells.xoff
        return (row * self.grid.grid_w + col, seeds.reshape(-1)[position].astype(np.int64), row, col,
                values[:, position], seeds)

    def release_cache(self):
        self.labels.release_cache()
        self.features.release_cache()


class _ExactSums:
    """Per (segment, channel) sums of float32 values as Python integers: exact, so independent of the order."""

    BUCKETS = 128 + _EXACT_SHIFT + 1

    def __init__(self):
        self.totals = {}

    def add(self, seeds, values):
        mantissa, exponent = np.frexp(values.astype(np.float64))
        integer = mantissa * float(2**24)  # exact: float32 values have 24-bit significands
        bucket = exponent + _EXACT_SHIFT
        for channel in range(values.shape[0]):
            keys = seeds * self.BUCKETS + bucket[channel]
            sums = np.bincount(keys, weights=integer[channel])  # exact: integers < 2**53 per window
            for key in np.flatnonzero(sums):
                segment, shift = divmod(int(key), self.BUCKETS)
                index = (segment, channel)
                self.totals[index] = self.totals.get(index, 0) + (int(sums[key]) << shift)

    def merge(self, other):
        """Add the sums of another ``_ExactSums`` (of other windows): integers, so in any order."""
        for index, value in other.totals.items():
            self.totals[index] = self.totals.get(index, 0) + value

    def means(self, counts, segments, channels):
        centres = np.full((segments, channels), np.nan)
        for segment in range(1, min(segments, len(counts) - 1) + 1):
            if counts[segment]:
                for channel in range(channels):
                    centres[segment - 1, channel] = self.totals.get((segment, channel), 0) / (
                        int(counts[segment]) << (_EXACT_SHIFT + 24))
        return centres


def _count(reader, windows, recompute, segments, labels_path, progress):
    """Usable blocks per id (index = id) and, when recomputing centres, exact feature sums per id."""
    counts = np.zeros(1, np.int64)
    sums = _ExactSums() if recompute else None
    for number, window in enumerate(windows):
        pixels = reader.pixels(window)
        _, seeds, _, _, values, _ = reader.cells(window, pixels)
        _check_ids(pixels, segments, labels_path)
        window_counts = np.bincount(seeds, minlength=len(counts))
        counts = np.pad(counts, (0, len(window_counts) - len(counts))) + window_counts
        if sums is not None and len(seeds):
            sums.add(seeds, values)
        reader.release_cache()
        progress.update((number + 1) / len(windows), f"Counting segments ({number + 1}/{len(windows)} windows)")
    return counts, sums


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


# ---------------------------------------------------------------- the graph formulation


def _graph_window_pixels(memory_mb, stride, channels, label_bytes, segments, links):
    """Label pixels per window core: label copies per pixel plus features, scores and link weights per block."""
    per_block = 4 * (2 * channels + 7 * segments + links) + 24
    per_pixel = 7 * label_bytes + 3 + per_block / (stride * stride)
    return max(stride * stride, int(memory_mb * 2**20 / per_pixel))


def _scan_window(reader, window, recompute, segments, labels_path, size, seed, largest=None):
    """One window of ``_scan``: (usable blocks per id, their exact feature sums per id or None, and the linear
    indices and index vectors of the window's candidates for the sample: the blocks whose key is below ``largest``
    (the sample's largest key so far), or without it the window's ``size`` smallest keys)."""
    grid, stride = reader.grid, reader.grid.stride
    # one more block row and column: the neighbours of the window's last blocks
    grown = Window(window.xoff, window.yoff, min(grid.width - window.xoff, window.width + stride),
                   min(grid.height - window.yoff, window.height + stride))
    grown_pixels = reader.pixels(grown)
    pixels = grown_pixels[: window.height, : window.width]
    _check_ids(pixels, segments, labels_path)
    linear, seeds, rows, cols, values, _ = reader.cells(window, pixels)
    window_counts = np.bincount(seeds, minlength=1)
    sums = None
    if recompute and len(seeds):
        sums = _ExactSums()
        sums.add(seeds, values)
    if largest is not None:  # only blocks whose key beats the sample's largest can enter it
        chosen = np.flatnonzero(hash_keys(linear, seed) < largest)
    elif len(linear) > size:
        chosen = np.sort(np.argpartition(hash_keys(linear, seed), size - 1)[:size])
    else:
        chosen = np.arange(len(linear))
    around = block_seeds(grown_pixels, stride)
    padded = np.zeros((around.shape[0] + 1, around.shape[1] + 1), np.float64)
    padded[: around.shape[0], : around.shape[1]] = around
    cells = window.on_grid(stride)
    local_rows, local_cols = rows[chosen] - cells.yoff, cols[chosen] - cells.xoff
    vectors = np.concatenate([linear[chosen, None].astype(np.float64), values[:, chosen].T.astype(np.float64),
                              seeds[chosen, None].astype(np.float64), padded[local_rows, local_cols + 1, None],
                              padded[local_rows + 1, local_cols, None]], axis=1)
    return window_counts, sums, linear[chosen], vectors


def scan_task(window, labels_path, features_path, grid, recompute, segments, size, seed):
    """Worker task: ``_scan_window`` of one window, LABELS and FEATURES opened by the worker."""
    reader = distributed.cached(("knn_refine", labels_path, features_path, grid.stride),
                                lambda: _open_reader(labels_path, features_path, grid), labels_path, features_path)
    return _scan_window(reader, window, recompute, segments, labels_path, size, seed)


def _scan(reader, windows, recompute, segments, labels_path, size, seed, progress, cluster=None, features_path=None):
    """One pass over the rasters: usable blocks per id (the ids checked), exact feature sums per id when the
    centres are recomputed, and the index: the ``size`` usable blocks with the smallest seeded hash keys (a
    uniform sample, the same whatever the windows) with their features, their id and the ids of their right and
    lower neighbours (0 = none). Returns counts, sums and (features (n, C), ids, right, lower) sorted by cell.
    On a ``cluster`` the windows are scanned by the workers and merged here (integer counts and sums: exact)."""
    counts = np.zeros(1, np.int64)
    sums = _ExactSums() if recompute else None
    sampler = BlockSample(size, seed)

    def here():
        for window in windows:
            largest = sampler.keys[-1] if len(sampler) >= size else None
            result = _scan_window(reader, window, recompute, segments, labels_path, size, seed, largest)
            reader.release_cache()
            yield window, result

    results = here() if cluster is None else cluster.ordered_map(
        scan_task, windows, labels_path, features_path, reader.grid, recompute, segments, size, seed)
    for number, (_, (window_counts, window_sums, linear, vectors)) in enumerate(results):
        length = max(len(counts), len(window_counts))
        counts = np.pad(counts, (0, length - len(counts))) + np.pad(window_counts, (0, length - len(window_counts)))
        if window_sums is not None:
            sums.merge(window_sums)
        sampler.offer(linear, vectors)
        progress.update((number + 1) / len(windows), f"Sampling the index ({number + 1}/{len(windows)} windows)")
    if not len(sampler):
        return counts, sums, None
    vectors = sampler.vectors[np.argsort(sampler.vectors[:, 0], kind="stable")]
    ids = vectors[:, -3:].astype(np.int64)
    return counts, sums, (vectors[:, 1:-3], ids[:, 0], ids[:, 1], ids[:, 2])


def _check_ids(pixels, segments, labels_path):
    low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
    if low < 0:
        raise InputError(f"LABELS '{labels_path}' has a negative segment id ({low}); ids are 1..K, 0 = nodata.")
    limit = segments or MAX_ID
    if high > limit:
        what = f"its metadata says K = {segments}" if segments else f"ids must be at most {MAX_ID}"
        raise InputError(
            f"LABELS '{labels_path}' has segment id {high}, but {what}. Choose a label raster with ids 1..K."
        )


def _calibrate(index, centres, offsets, temperature, mix, iterations, spatial_weight):
    """The graph model: s^2 and the prior's temperature fitted on the index (see latent_graph.fit_temperature)."""
    features, ids, right, lower = index
    distances = squared_distances(features, centres)
    scale2 = scale2_of(distances, ids)
    rows = np.arange(len(ids))
    sources = np.concatenate([rows[right > 0], rows[lower > 0]])
    neighbour_ids = np.concatenate([right[right > 0], lower[lower > 0]])
    fitted = fit_temperature(distances, scale2, sources, neighbour_ids)
    model = GraphModel(centres=np.asarray(centres, np.float64), scale2=scale2, temperature=temperature * fitted,
                       offsets=offsets, spatial_weight=spatial_weight, mix=mix, iterations=iterations)
    return model, fitted


def _graph_cells(reader, window):
    """LABELS pixels of ``window`` (at a block corner), block seeds, features (C, h, w) float32 and the usable
    blocks (a seed label and valid features)."""
    stride = reader.grid.stride
    pixels = reader.pixels(window)
    seeds = block_seeds(pixels, stride)
    values = reader.features.read(window.on_grid(stride))
    return pixels, seeds, values, (seeds > 0) & reader.features.usable(values)


def _refine_graph_window(reader, window, model, dtype, mapper=map, tick=None):
    """(labels of ``window``, pixels changed): the window grown by the model's halo, refined, cut back."""
    grid, stride = reader.grid, reader.grid.stride
    grown = window.grown(model.halo * stride, grid.width, grid.height)
    pixels, seeds, values, usable = _graph_cells(reader, grown)
    reader.release_cache()
    if model.iterations == 0:  # the segments as they are
        return pixels[window.yoff - grown.yoff :, window.xoff - grown.xoff :][: window.height, : window.width], 0
    shares = label_shares(pixels, seeds, stride, model.segments)
    scores = refine_window(values, shares, usable, model, mapper=mapper)
    if tick:
        tick(0.8)
    core_rows, core_cols = window.on_grid(stride).within(grown.on_grid(stride)).slices
    core = (core_rows.start, core_rows.stop, core_cols.start, core_cols.stop)
    refined = pixel_labels(scores, usable, stride, core, dtype, mapper)[: window.height, : window.width]
    y0, x0 = window.yoff - grown.yoff, window.xoff - grown.xoff
    original = pixels[y0 : y0 + window.height, x0 : x0 + window.width]
    # pixels of blocks that are not refined (no features) keep their label; nodata stays nodata
    result = np.where((refined > 0) & (original != 0), refined, original).astype(dtype)
    return result, int(np.count_nonzero(result != original))


def _refine_graph(reader, windows, model, output, mapper, progress):
    """Refine window by window (each grown by the model's halo); returns the number of pixels changed. ``mapper``
    spreads bands of block rows over threads (``map`` for one)."""
    dtype = np.uint8 if output.band(1).DataType == gdal.GDT_Byte else np.uint16
    changed = 0
    for number, window in enumerate(windows):

        def tick(fraction, number=number):
            progress.update((number + fraction) / len(windows),
                            f"Refining blocks ({number + 1}/{len(windows)} windows)")

        result, window_changed = _refine_graph_window(reader, window, model, dtype, mapper, tick)
        changed += window_changed
        output.write(result, window.xoff, window.yoff)
        output.release_cache()
        tick(1.0)
    return changed


def _open_reader(labels_path, features_path, grid):
    """A worker's ``_Reader`` of LABELS and FEATURES, opened as ``refine_knn`` opens them."""
    return _Reader(LabelRaster.open(labels_path, "label raster (LABELS)"), FeatureRaster.open(features_path), grid)


def refine_task(window, labels_path, features_path, grid, model, dtype):
    """Worker task: ``_refine_graph_window`` of one window, LABELS and FEATURES opened by the worker."""
    reader = distributed.cached(("knn_refine", labels_path, features_path, grid.stride),
                                lambda: _open_reader(labels_path, features_path, grid), labels_path, features_path)
    return _refine_graph_window(reader, window, model, dtype)


def _refine_graph_on_cluster(cluster, labels_path, features_path, grid, windows, model, output, progress):
    """``_refine_graph`` with the windows refined on the cluster and written here, in order."""
    dtype = np.uint8 if output.band(1).DataType == gdal.GDT_Byte else np.uint16
    changed = 0
    results = cluster.ordered_map(refine_task, windows, labels_path, features_path, grid, cluster.share(model), dtype)
    for number, (window, (result, window_changed)) in enumerate(results):
        changed += window_changed
        output.write(result, window.xoff, window.yoff)
        output.release_cache()
        progress.update((number + 1) / len(windows), f"Refining blocks ({number + 1}/{len(windows)} windows)")
    return changed


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


# ---------------------------------------------------------------- writing


def _expand(grid, stride, window):
    return np.repeat(np.repeat(grid, stride, axis=0), stride, axis=1)[: window.height, : window.width]


def _refine(reader, windows, model, iterations, output, pool, progress):
    stride = model.grid.stride
    dtype = np.uint8 if output.band(1).DataType == gdal.GDT_Byte else np.uint16
    for number, window in enumerate(windows):
        pixels = reader.pixels(window)
        linear, seeds, rows, cols, values, grid_seeds = reader.cells(window, pixels)
        refined = np.zeros(grid_seeds.size, dtype)
        cells = window.on_grid(stride)
        local = (rows - cells.yoff) * grid_seeds.shape[1] + (cols - cells.xoff)
        chunk = _query_chunk(max(min(CHUNK, 1024), CHUNK * 8 // max(len(model.centres), 8)), model.neighbours)
        parts = [slice(start, start + chunk) for start in range(0, len(seeds), chunk)]
        found = _in_order(pool, refine_points,
                          [(values[:, part], seeds[part], rows[part], cols[part], model, iterations) for part in parts],
                          progress, lambda done, total, n=number: (n + done / total) / len(windows),
                          f"Refining blocks ({number + 1}/{len(windows)} windows)")
        for part, labels in zip(parts, found):
            refined[local[part]] = labels
        # A block whose label changed hands the new label to the pixels that carried its old one; pixels of other
        # ids (boundaries drawn at pixel level, e.g. by segmenter:blur) and unchanged blocks keep theirs.
        changed = np.where((refined > 0) & (refined != grid_seeds.ravel()), refined, 0).reshape(grid_seeds.shape)
        new = _expand(changed, stride, window)
        result = np.where((new > 0) & (pixels == _expand(grid_seeds, stride, window)), new, pixels).astype(dtype)
        output.write(result, window.xoff, window.yoff)
        reader.release_cache()
        output.release_cache()
        progress.update((number + 1) / len(windows), f"Refining blocks ({number + 1}/{len(windows)} windows)")


def _style(band, label_meta, segments):
    """Keep the input's colours and segment names when it has them for every id."""
    colours = table_colours(band, segments)
    return colours, label_meta.names_for(segments)
