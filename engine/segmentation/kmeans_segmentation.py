"""Streaming K-Means segmentation of a raster of any size with bounded memory and exact results: the block
descriptors' ``FeatureExtractor`` in the pipeline of engine/segmentation/pipeline.py.

Pass 1 reads the input once, window by window, and writes the block descriptors (a Float32 raster on the
block grid) while keeping a seeded sample spread over the whole raster. The centres are fitted on that
sample (or taken from a reference label raster). Pass 2 reads the descriptors back, assigns every block
to its nearest centre and writes the labels on the input's pixel grid.

On a Dask cluster (SCHEDULER) pass 1 runs as ``descriptors_task`` on the workers (each window's descriptors, or
only its sample candidates when no FEATURES are written) and pass 2 as ``label_task``, which computes the
descriptors again (exact integer sums: the same values) so no feature raster is shared with the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..rasters.feature_raster import STRIP_OPTIONS
from ..rasters.metadata import FeatureMeta
from ..rasters.raster_io import value_ranges
from ..rasters.region import Region
from ..rasters.windows import Window, cells, plan_windows
from ..runtime import checks, params
from ..runtime.errors import InputError
from ..runtime.memory import CACHE_SHARE, block_alignment, within_budget
from ..runtime.pipeline import WORKERS
from ..runtime.progress import Progress
from . import kmeans
from .descriptors import QUANT, TEXTURE_WEIGHT, block_descriptors, feature_names
from .hierarchy import K_MAX, K_MIN
from .label_pass import assign_cells, write_windows
from .pipeline import Cells, FeatureExtractor, Settings, linear_indices, segment
from .sampling import hash_keys

BYTES_PER_PIXEL = 24  # working memory per window pixel in pass 1 (input, int32 copies, padding, masks)
DESCRIPTOR = "lab_mean_std"
# A window's descriptors are computed in column chunks of about this many pixels: the working memory of a window
# on a worker (about 8 bytes per pixel) stays that of a chunk while the window's pixels are in flight.
CHUNK_PIXELS = 2**20


@dataclass
class KMeansResult:
    output: str
    features: str | None
    centres: np.ndarray
    valid_blocks: int
    windows: int
    present: int = 0  # segments that occur in the output (the SEGMENTS output; fewer than K on uniform rasters)
    criterion: dict = None  # SEGMENTS = 0: the automatic choice of K (engine/segmentation/hierarchy.py)


def quantiser(ranges):
    """(quantise, quant) for the (lo, hi) ``ranges`` per band, or None for 8-bit input: a function turning raw
    pixels into integers on the 0..255 scale (times QUANT unless 8-bit)."""
    if ranges is None:
        return (lambda pixels: pixels), 1
    lo = np.array([r[0] for r in ranges])[:, None, None]
    scale = np.array([255.0 * QUANT / (r[1] - r[0]) for r in ranges])[:, None, None]

    def quantise(pixels):
        scaled = np.nan_to_num((pixels.astype(np.float64) - lo) * scale, nan=0.0)
        return np.clip(np.rint(scaled), 0, 255 * QUANT).astype(np.int32)

    return quantise, QUANT


@dataclass(frozen=True)
class Describer:
    """How the blocks of a window are described (picklable: a Dask worker gets it with each task)."""

    block: int
    context: int
    ranges: list  # per band (lo, hi), None for 8-bit input
    texture_weight: float

    @property
    def halo(self):
        return self.context * self.block

    def read(self, raster, window):
        """The window grown by ``context`` blocks: its pixels and validity (GDAL: one thread per dataset)."""
        grown = window.grown(self.halo, raster.width, raster.height)
        pixels = raster.read(grown)
        valid = raster.read_valid(grown, pixels)
        return window, grown, pixels, valid  # the input's blocks stay in GDAL's capped cache for the next windows

    def descriptors(self, window, grown, pixels, valid):
        """Descriptors (rows, cols, C) and block validity of the window's own blocks."""
        quantise, quant = quantiser(self.ranges)
        block, context = self.block, self.context
        core = window.on_grid(block).within(grown.on_grid(block))
        rows = slice(core.yoff, core.yoff + core.height)
        grid_width = cells(pixels.shape[-1], block)
        step = max(1, CHUNK_PIXELS // (pixels.shape[-2] * block * block))  # cell columns per chunk
        descriptors = block_valid = None
        for start in range(core.xoff, core.xoff + core.width, step):
            stop = min(start + step, core.xoff + core.width)
            first, last = max(0, start - context), min(grid_width, stop + context)  # with the ring's columns
            columns = slice(first * block, last * block)
            part, part_valid = block_descriptors(
                quantise(pixels[:, :, columns]), None if valid is None else valid[:, columns], block=block,
                context=context, quant=quant, texture_weight=self.texture_weight)
            if descriptors is None:
                descriptors = np.empty((core.height, core.width, part.shape[-1]), part.dtype)
                block_valid = np.empty((core.height, core.width), bool)
            own = slice(start - first, stop - first)
            descriptors[:, start - core.xoff : stop - core.xoff] = part[rows, own]
            block_valid[:, start - core.xoff : stop - core.xoff] = part_valid[rows, own]
        return descriptors, block_valid


class BlockDescriptors(FeatureExtractor):
    """Colour and texture of every ``block`` x ``block`` px block and its ``context`` ring
    (engine/segmentation/descriptors.py), window by window: GDAL reads in the pipeline's thread, the descriptors on
    ``ordered_map``'s workers."""

    method = "kmeans"
    stage = "Describing blocks"
    stages = (("Measuring the raster", 1), ("Describing blocks", 55), ("Fitting centres", 5),
              ("Assigning segments", 39))
    unit = "windows"
    cell_units = "blocks"
    advice = f"Choose fewer {params.SEGMENTS} or a smaller {params.BLOCK_SIZE}."
    feature_options = STRIP_OPTIONS

    def __init__(self, block=4, context=1, texture_weight=TEXTURE_WEIGHT):
        self.stride = checks.whole(params.BLOCK_SIZE, block)
        self.context = checks.whole("context", context, 0)
        self.texture_weight = checks.number("texture_weight", texture_weight, 0)
        if self.stride < 1:
            raise InputError(f"{params.BLOCK_SIZE} must be at least 1 pixel; got {self.stride}.")
        self.halo = self.context * self.stride

    def check_raster(self, raster):
        self.raster, block = raster, self.stride
        self.channels = len(feature_names(len(raster.bands)))
        if block > max(raster.width, raster.height):  # thinner rasters are fine: their blocks are partial
            raise InputError(
                f"{params.BLOCK_SIZE} {block} px is larger than the raster ({raster.width} x {raster.height} px). "
                f"Choose a {params.BLOCK_SIZE} of at most {max(raster.width, raster.height)}."
            )

    def reference_mismatch(self, reference):
        centres, feature_meta = reference.centres, reference.features
        if centres.ndim != 2 or centres.shape[1] != self.channels or feature_meta.kind != DESCRIPTOR:
            return (f"was made with other features ({feature_meta.kind}, {centres.shape[-1]} channels); this run "
                    f"has {self.channels} {DESCRIPTOR} channels. Use the same {params.BANDS} count and method as the "
                    f"reference.")
        if feature_meta.stride != self.stride:
            return (f"used {params.BLOCK_SIZE} {feature_meta.stride}; this run uses {self.stride}. Use the same "
                    f"{params.BLOCK_SIZE}.")
        return None

    def plan(self, raster, settings, reference, progress):
        self.ranges = value_ranges(raster, reference)
        self.describer = Describer(self.stride, self.context, self.ranges, self.texture_weight)
        # the windows in flight share what GDAL's block cache leaves of the budget
        window_bytes = settings.memory_bytes - settings.memory_bytes // CACHE_SHARE
        max_pixels = window_bytes // (BYTES_PER_PIXEL * (WORKERS + 1))
        self.windows = plan_windows(raster.width, raster.height, max_pixels, step=self.stride,
                                    **block_alignment(raster))
        self.grid = Window.whole(raster.width, raster.height).on_grid(self.stride)
        progress.log(f"{raster.width} x {raster.height} px, {len(self.windows)} windows, block grid "
                     f"{self.grid.width} x {self.grid.height}")
        return self.windows

    def use_cluster(self, cluster, settings, progress):
        self.cluster, self.source, self.keep_descriptors = cluster, settings.source(), bool(settings.features_path)
        self.sample_size, self.seed = settings.sample_size, settings.seed
        self.assign = partial(_assign_on_cluster, on_cluster=(cluster, self.source, self.describer))

    def describe(self, windows):
        if self.cluster is None:
            return super().describe(windows)
        return self.cluster.ordered_map(descriptors_task, windows, self.source, self.describer, self.grid.width,
                                        self.sample_size, self.seed, self.keep_descriptors)

    def read(self, window):
        return self.describer.read(self.raster, window)

    def compute(self, window, grown, pixels, valid):
        return [_cells(window, *self.describer.descriptors(window, grown, pixels, valid), self.stride,
                       self.grid.width)]

    def fit(self, sample, segments, seed, check, start=None):
        return kmeans.order_by_brightness(kmeans.fit(sample, segments, seed=seed, check=check, start=start))

    def feature_meta(self, raster):
        return FeatureMeta(DESCRIPTOR, feature_names(len(raster.bands)), self.stride,
                           dict(context=self.context, texture_weight=self.texture_weight), raster.bands, self.ranges)

    def label_windows(self, raster, settings, segments, progress):
        return self.windows


def _cells(window, descriptors, block_valid, block, grid_width):
    """The window's ``Cells``: descriptors (C, rows, cols) and its valid blocks' linear indices and descriptors."""
    cells = window.on_grid(block)
    rows, cols = np.nonzero(block_valid)
    return Cells(cells, np.moveaxis(descriptors, -1, 0), linear_indices(rows, cols, cells, grid_width),
                 descriptors[rows, cols])


def descriptors_task(window, source, describer, grid_width, sample_size, seed, keep_descriptors):
    """Worker task of pass 1: the window's ``Cells``, the input opened by the worker. Without ``keep_descriptors``
    no values come back and only the ``sample_size`` valid blocks with the smallest seeded keys (``valid`` says how
    many there were): the global sample (the smallest keys of all) is among them, so the driver's sample is the
    same."""
    raster = source.open()
    cells = _cells(window, *describer.descriptors(*describer.read(raster, window)), describer.block, grid_width)
    if not keep_descriptors:
        count = len(cells.linear)
        linear, vectors = cells.linear, cells.vectors
        if count > sample_size:
            chosen = np.sort(np.argpartition(hash_keys(linear, seed), sample_size - 1)[:sample_size])
            linear, vectors = linear[chosen], vectors[chosen]
        cells = Cells(cells.window, None, linear, vectors, count)
    return [cells]


def label_task(window, source, describer, centres):
    """Worker task of pass 2: the window's labels, from its descriptors computed again (exact integer sums: the
    same values as pass 1 wrote), so no feature raster has to be shared with the workers."""
    raster = source.open()
    descriptors, _ = describer.descriptors(*describer.read(raster, window))
    rows, cols, channels = descriptors.shape
    pixel_valid = raster.read_valid(window) if raster.has_mask else None
    return assign_cells(window, descriptors.reshape(rows * cols, channels), pixel_valid, describer.block, centres)


def _assign_on_cluster(raster, windows, stride, features, centres, labels, progress, present=None, on_cluster=None):
    cluster, source, describer = on_cluster
    write_windows(cluster.ordered_map(label_task, windows, source, describer, cluster.share(np.asarray(centres))),
                  windows, labels, progress, present)


@within_budget
def segment_kmeans(
    input_path: str,
    output_path: str,
    segments: int = 8,
    block: int = 4,
    seed: int = 0,
    bands: Sequence[int] | None = None,
    features_path: str | None = None,
    memory_mb: float = 256,
    reference_path: str | None = None,
    context: int = 1,
    texture_weight: float = TEXTURE_WEIGHT,
    sample_size: int = 50_000,
    region: Region | None = None,
    progress: Progress | None = None,
    scheduler: Any = None,
    k_min: int = K_MIN,
    k_max: int = K_MAX,
) -> KMeansResult:
    """Segment ``input_path`` into ``segments`` kinds of region by K-Means on block descriptors
    (``segmenter:kmeans``).

    Parameters
    ----------
    input_path, output_path : str
        INPUT (a raster; BANDS chooses three colour bands) and OUTPUT (the label raster, ids 1..K, 0 = nodata).
    segments : int
        SEGMENTS: K; 0 chooses K in ``k_min``..``k_max`` (segmentation/hierarchy.py; the evidence is ``criterion``).
    block, context, texture_weight : number
        BLOCK_SIZE (px per label cell), the blocks of context around each, the weight of texture beside colour.
    seed, sample_size : int
        SEED of the sample and of k-means++; how many blocks the centres are fitted on.
    bands : sequence of int, optional
        BANDS (1-based).
    features_path, reference_path : str, optional
        FEATURES (the descriptors, for knn_refine) and REFERENCE (a label raster whose centres are reused).
    memory_mb : float
        MEMORY_MB: windows, sample and GDAL's cache fit in it; the result does not depend on it.
    region : Region, optional
        EXTENT / PIXEL_SIZE / MASK: only these pixels.
    progress : Progress, optional
        Progress, cancel and log.
    scheduler : str or distributed.Client, optional
        A Dask scheduler to run the windows on (engine/backends/distributed.py); None or empty: this process. The
        same bytes either way.
    k_min, k_max : int
        K_MIN, K_MAX: the range automatic K is chosen in.

    Returns
    -------
    KMeansResult
        The outputs, the centres, the valid cells, the windows, the segments present and the criterion (automatic K).
    """
    settings = Settings.checked(input_path, output_path, segments, seed, bands, features_path, memory_mb,
                                reference_path, sample_size, region, scheduler, k_min, k_max)
    run = segment(BlockDescriptors(block, context, texture_weight), settings, progress or Progress())
    return KMeansResult(run.output, run.features, run.centres, run.valid_cells, run.label_windows, run.present,
                        run.criterion)
