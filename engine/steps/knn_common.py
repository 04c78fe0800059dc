"""What the two formulations of latent KNN refinement (``knn_graph``, ``knn_global``) share: the checked
settings, the grids of LABELS and FEATURES, the segment centres, the reader of both rasters, the exact per-segment
sums, the scan that counts usable blocks per id, and the writer of refined windows.

``knn_refine.refine_knn`` runs a formulation over these; the formulations import this module, never each other.
"""

import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from osgeo import gdal, osr

from ..rasters.colour_tables import table_colours
from ..rasters.feature_raster import FeatureRaster, usable_features
from ..rasters.labels import MAX_ID, LabelRaster
from ..rasters.raster_io import scaled_geotransform
from ..rasters.windows import Window, plan_windows
from ..runtime import checks
from ..runtime.errors import InputError
from ..runtime.params import (
    FEATURES,
    INDEX_SIZE,
    ITERATIONS,
    LABELS,
    MEMORY_MB,
    METHOD,
    MIX,
    NEIGHBORS,
    OUTPUT,
    SEED,
    SPATIAL_WEIGHT,
    TEMPERATURE,
)
from .window_step import WindowStep

METHODS = ("graph", "predecessor")
NEIGHBOUR_BYTES = 4  # int32 index of a neighbour in the table of the index points' neighbours
TABLE_MB = 256  # the neighbour table (INDEX_SIZE x NEIGHBORS) is kept whole: its cap, unless MEMORY_MB / 2 is more
_EXACT_SHIFT = 148  # float32 v = M * 2**(e - 24), |M| < 2**24, e >= -148: v * 2**172 = M << (e + 148)


@dataclass
class _Grid:
    """The label raster's pixel grid and the feature grid (stride r) laid on it."""

    width: int
    height: int
    stride: int
    grid_w: int
    grid_h: int


@dataclass(frozen=True)
class KnnSettings:
    """The arguments of ``refine_knn``, checked (``checked``): paths, the formulation and its numbers."""

    labels_path: str
    features_path: str
    output_path: str
    neighbors: int
    temperature: float
    mix: float
    iterations: int
    spatial_weight: float
    seed: int
    index_size: int
    memory_mb: float
    threads: int
    method: str = "graph"
    scheduler: object = None  # a Dask scheduler's address or a distributed.Client; None: this process

    @classmethod
    def checked(cls, labels_path, features_path, output_path, neighbors, temperature, mix, iterations,
                spatial_weight, seed, index_size, memory_mb, workers, method, scheduler):
        """The settings from ``refine_knn``'s arguments; an ``InputError`` naming the parameter when one is wrong."""
        settings = cls(
            labels_path=checks.path(LABELS, labels_path), features_path=checks.path(FEATURES, features_path),
            output_path=checks.path(OUTPUT, output_path), neighbors=checks.whole(NEIGHBORS, neighbors),
            temperature=checks.number(TEMPERATURE, temperature), mix=checks.number(MIX, mix),
            iterations=checks.whole(ITERATIONS, iterations),
            spatial_weight=checks.number(SPATIAL_WEIGHT, spatial_weight), seed=checks.whole(SEED, seed, 0),
            index_size=checks.whole(INDEX_SIZE, index_size), memory_mb=checks.memory(memory_mb),
            threads=_threads(checks.whole("workers", workers, -1)), method=method, scheduler=scheduler)
        if method not in METHODS:
            raise InputError(f"{METHOD} must be one of {', '.join(METHODS)}; got {method!r}.")
        _check_parameters(settings, table=method == "predecessor")
        return settings


def _threads(workers):
    return max(1, os.cpu_count() or 1) if workers == -1 else max(1, int(workers))


def _check_parameters(settings, table=True):
    """The ranges of the numbers; ``table``: the neighbour table of the global formulation fits its cap."""
    neighbors, temperature, mix = settings.neighbors, settings.temperature, settings.mix
    iterations, spatial_weight = settings.iterations, settings.spatial_weight
    index_size, memory_mb = settings.index_size, settings.memory_mb
    if not 1 <= neighbors <= 1000:
        raise InputError(f"{NEIGHBORS} must be between 1 and 1000; got {neighbors}.")
    if not temperature > 0 or not np.isfinite(temperature):
        raise InputError(f"{TEMPERATURE} must be greater than 0; got {temperature}.")
    if not 0 <= mix <= 1:
        raise InputError(f"{MIX} must be between 0 and 1; got {mix}.")
    if not 0 <= iterations <= 100:
        raise InputError(f"{ITERATIONS} must be between 0 and 100; got {iterations}.")
    if not spatial_weight >= 0 or not np.isfinite(spatial_weight):
        raise InputError(f"{SPATIAL_WEIGHT} must be 0 or more; got {spatial_weight}.")
    if index_size < 1:
        raise InputError(f"{INDEX_SIZE} must be at least 1; got {index_size}.")
    table_mb = index_size * neighbors * NEIGHBOUR_BYTES / 2**20
    allowed = max(TABLE_MB, memory_mb / 2) if memory_mb > 0 else TABLE_MB
    if table and iterations > 1 and table_mb > allowed:
        raise InputError(
            f"{NEIGHBORS} {neighbors} x {INDEX_SIZE} {index_size} needs a {table_mb:.0f} MB neighbour table (at most "
            f"{allowed:.0f} MB: {TABLE_MB} MB, or half of {MEMORY_MB} when that is more). Lower {NEIGHBORS} or "
            f"{INDEX_SIZE}, or raise {MEMORY_MB} to {2 * table_mb:.0f}."
        )
    if not memory_mb > 0:
        raise InputError(f"{MEMORY_MB} must be greater than 0; got {memory_mb}.")


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
        """The window's usable cells, as ``usable_cells`` gives them (LABELS read unless ``pixels`` are given)."""
        pixels = self.pixels(window) if pixels is None else pixels
        return usable_cells(self.grid, window, pixels, self.features.read(window.on_grid(self.grid.stride)),
                            self.features.nodata)

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


def usable_cells(grid, window, pixels, values, nodata):
    """The usable cells (a seed label and valid features) of ``window`` from its LABELS ``pixels`` and FEATURES
    ``values`` (C, rows, cols; ``nodata`` per band): linear index, seed, row, col (m,), features (C, m) float32; and
    the seeds of all its cells (rows, cols)."""
    stride = grid.stride
    seeds = block_seeds(pixels, stride)
    rows, cols = seeds.shape
    cells = window.on_grid(stride)
    values = values.reshape(-1, rows * cols)
    usable = (seeds.reshape(-1) > 0) & usable_features(values, nodata)
    position = np.flatnonzero(usable)
    row = position // cols + cells.yoff
    col = position % cols + cells.xoff
    return (row * grid.grid_w + col, seeds.reshape(-1)[position].astype(np.int64), row, col, values[:, position],
            seeds)


def open_reader(labels_path, features_path, grid):
    """A worker's ``_Reader`` of LABELS and FEATURES, opened as ``refine_knn`` opens them."""
    return _Reader(LabelRaster.open(labels_path, "label raster (LABELS)"), FeatureRaster.open(features_path), grid)


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


# ---------------------------------------------------------------- the shared scan and writer


def tally_window(cells, pixels, recompute, segments, labels_path):
    """The ids of ``pixels`` (LABELS over the window of ``cells``, its ``usable_cells``) checked; (usable blocks per
    id, their exact feature sums per id or None, and ``cells``)."""
    _check_ids(pixels, segments, labels_path)
    seeds, values = cells[1], cells[4]
    sums = None
    if recompute and len(seeds):
        sums = _ExactSums()
        sums.add(seeds, values)
    return np.bincount(seeds, minlength=1), sums, cells


@dataclass(frozen=True)
class ScanStep(WindowStep):
    """A window's ``tally_window``: usable blocks per id, their exact feature sums (``recompute``), ids checked."""

    labels_path: str
    features_path: str
    grid: _Grid
    recompute: bool
    segments: int | None

    stage: ClassVar[str] = "Counting segments"

    @property
    def paths(self):
        return (self.labels_path, self.features_path)

    def open(self):
        return open_reader(self.labels_path, self.features_path, self.grid)

    def read(self, reader, window):
        pixels = reader.pixels(window)
        values = reader.features.read(window.on_grid(self.grid.stride))
        reader.release_cache()
        return pixels, values, reader.features.nodata

    def compute(self, window, pixels, values, nodata, tick=None):
        cells = usable_cells(self.grid, window, pixels, values, nodata)
        return tally_window(cells, pixels, self.recompute, self.segments, self.labels_path)


def scan(results, recompute, offer=None):
    """Merge the windows' ``tally_window`` results ``results`` [(window, (counts, sums, extra))], in order: usable
    blocks per id (index = id) and, when ``recompute``, exact feature sums per id (integers: the same in any order).
    ``offer(extra)`` takes what else a formulation's scan found in the window."""
    counts = np.zeros(1, np.int64)
    sums = _ExactSums() if recompute else None
    for _, (window_counts, window_sums, extra) in results:
        length = max(len(counts), len(window_counts))
        counts = np.pad(counts, (0, length - len(counts))) + np.pad(window_counts, (0, length - len(window_counts)))
        if window_sums is not None:
            sums.merge(window_sums)
        if offer is not None:
            offer(extra)
    return counts, sums


@dataclass
class Inputs:
    """LABELS and FEATURES of a run, open and checked: what a formulation works on."""

    settings: KnnSettings
    reader: _Reader
    grid: _Grid
    channels: int  # FEATURES bands
    label_bytes: int  # bytes per LABELS pixel
    row_step: int  # LABELS' block height: windows follow its block rows
    segments: int | None  # K from the LABELS metadata (None: unknown)
    recompute: bool  # no usable centres in the metadata: the scan sums the features per id
    progress: object

    def plan_windows(self, max_pixels):
        """Windows of at most ``max_pixels`` LABELS pixels, on the feature grid and LABELS' block rows."""
        grid = self.grid
        return plan_windows(grid.width, grid.height, max_pixels, step=grid.stride, row_step=self.row_step)


def label_dtype(output):
    """The numpy type of the refined labels written to ``output`` (an ``AtomicRaster``)."""
    return np.uint8 if output.band(1).DataType == gdal.GDT_Byte else np.uint16


def write_windows(results, output):
    """Write the refined windows ``results`` [(window, (labels, pixels changed))] in order; the pixels changed."""
    changed = 0
    for window, (labels, window_changed) in results:
        changed += window_changed
        output.write(labels, window.xoff, window.yoff)
        output.release_cache()
    return changed


def log_grid(progress, grid, channels, windows):
    progress.log(f"{grid.width} x {grid.height} px, feature grid {grid.grid_w} x {grid.grid_h} (stride "
                 f"{grid.stride}), {channels} feature channels, {len(windows)} windows")


def _style(band, label_meta, segments):
    """Keep the input's colours and segment names when it has them for every id."""
    colours = table_colours(band, segments)
    return colours, label_meta.names_for(segments)
