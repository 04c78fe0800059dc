"""Streaming K-Means segmentation of a raster of any size with bounded memory and exact results: the block
descriptors' ``FeatureExtractor`` in the pipeline of engine/segmentation.py.

Pass 1 reads the input once, window by window, and writes the block descriptors (a Float32 raster on the
block grid) while keeping a seeded sample spread over the whole raster. The centres are fitted on that
sample (or taken from a reference label raster). Pass 2 reads the descriptors back, assigns every block
to its nearest centre and writes the labels on the input's pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from . import checks, kmeans
from .descriptors import QUANT, TEXTURE_WEIGHT, block_descriptors, feature_names
from .errors import InputError
from .feature_raster import STRIP_OPTIONS
from .memory import block_alignment, within_budget
from .metadata import FeatureMeta
from .pipeline import WORKERS
from .progress import Progress
from .raster_io import value_ranges
from .segmentation import Cells, FeatureExtractor, Settings, linear_indices, segment
from .windows import Window, plan_windows

BYTES_PER_PIXEL = 24  # working memory per window pixel in pass 1 (input, int32 copies, padding, masks)
DESCRIPTOR = "lab_mean_std"


@dataclass
class KMeansResult:
    output: str
    features: str | None
    centres: np.ndarray
    valid_blocks: int
    windows: int
    present: int = 0  # segments that occur in the output (the SEGMENTS output; fewer than K on uniform rasters)


def _quantiser(raster, reference=None):
    """Function turning raw pixels into integers on the 0..255 scale (times QUANT unless 8-bit)."""
    ranges = value_ranges(raster, reference)
    if ranges is None:
        return (lambda pixels: pixels), 1, None
    lo = np.array([r[0] for r in ranges])[:, None, None]
    scale = np.array([255.0 * QUANT / (r[1] - r[0]) for r in ranges])[:, None, None]

    def quantise(pixels):
        scaled = np.nan_to_num((pixels.astype(np.float64) - lo) * scale, nan=0.0)
        return np.clip(np.rint(scaled), 0, 255 * QUANT).astype(np.int32)

    return quantise, QUANT, ranges


class BlockDescriptors(FeatureExtractor):
    """Colour and texture of every ``block`` x ``block`` px block and its ``context`` ring (engine/descriptors.py),
    window by window: GDAL reads in the pipeline's thread, the descriptors on ``ordered_map``'s workers."""

    method = "kmeans"
    stage = "Describing blocks"
    stages = (("Measuring the raster", 1), ("Describing blocks", 55), ("Fitting centres", 5),
              ("Assigning segments", 39))
    unit = "windows"
    cell_units = "blocks"
    advice = "Choose fewer SEGMENTS or a smaller BLOCK_SIZE."
    feature_options = STRIP_OPTIONS

    def __init__(self, block=4, context=1, texture_weight=TEXTURE_WEIGHT):
        self.stride = checks.whole("BLOCK_SIZE", block)
        self.context = checks.whole("context", context, 0)
        self.texture_weight = checks.number("texture_weight", texture_weight, 0)
        if self.stride < 1:
            raise InputError(f"BLOCK_SIZE must be at least 1 pixel; got {self.stride}.")
        self.halo = self.context * self.stride

    def check_raster(self, raster):
        self.raster, block = raster, self.stride
        self.channels = len(feature_names(len(raster.bands)))
        if block > max(raster.width, raster.height):  # thinner rasters are fine: their blocks are partial
            raise InputError(
                f"BLOCK_SIZE {block} px is larger than the raster ({raster.width} x {raster.height} px). "
                f"Choose a BLOCK_SIZE of at most {max(raster.width, raster.height)}."
            )

    def reference_mismatch(self, reference):
        centres, feature_meta = reference.centres, reference.features
        if centres.ndim != 2 or centres.shape[1] != self.channels or feature_meta.kind != DESCRIPTOR:
            return (f"was made with other features ({feature_meta.kind}, {centres.shape[-1]} channels); this run "
                    f"has {self.channels} {DESCRIPTOR} channels. Use the same BANDS count and method as the "
                    f"reference.")
        if feature_meta.stride != self.stride:
            return f"used BLOCK_SIZE {feature_meta.stride}; this run uses {self.stride}. Use the same BLOCK_SIZE."
        return None

    def plan(self, raster, settings, reference, progress):
        self.quantise, quant, self.ranges = _quantiser(raster, reference)
        self.describe = partial(block_descriptors, block=self.stride, context=self.context, quant=quant,
                                texture_weight=self.texture_weight)
        max_pixels = settings.memory_bytes // (BYTES_PER_PIXEL * (WORKERS + 1))  # windows in flight
        self.windows = plan_windows(raster.width, raster.height, max_pixels, step=self.stride,
                                    **block_alignment(raster))
        self.grid = Window.whole(raster.width, raster.height).on_grid(self.stride)
        progress.log(f"{raster.width} x {raster.height} px, {len(self.windows)} windows, block grid "
                     f"{self.grid.width} x {self.grid.height}")
        return self.windows

    def read(self, window):
        grown = window.grown(self.halo, self.raster.width, self.raster.height)
        pixels = self.raster.read(grown)
        valid = self.raster.read_valid(grown, pixels)
        return window, grown, pixels, valid  # the input's blocks stay in GDAL's capped cache for the next windows

    def compute(self, window, grown, pixels, valid):
        descriptors, block_valid = self.describe(self.quantise(pixels), valid)
        cells = window.on_grid(self.stride)
        core = cells.within(grown.on_grid(self.stride)).slices
        descriptors, block_valid = descriptors[core], block_valid[core]
        rows, cols = np.nonzero(block_valid)
        return [Cells(cells, np.moveaxis(descriptors, -1, 0), linear_indices(rows, cols, cells, self.grid.width),
                      descriptors[rows, cols])]

    def fit(self, sample, segments, seed, check):
        return kmeans.order_by_brightness(kmeans.fit(sample, segments, seed=seed, check=check))

    def feature_meta(self, raster):
        return FeatureMeta(DESCRIPTOR, feature_names(len(raster.bands)), self.stride,
                           dict(context=self.context, texture_weight=self.texture_weight), raster.bands, self.ranges)

    def label_windows(self, raster, settings, segments, progress):
        return self.windows


@within_budget
def segment_kmeans(
    input_path,
    output_path,
    segments=8,
    block=4,
    seed=0,
    bands=None,
    features_path=None,
    memory_mb=256,
    reference_path=None,
    context=1,
    texture_weight=TEXTURE_WEIGHT,
    sample_size=50_000,
    region=None,
    progress=None,
):
    """Segment ``input_path`` into ``segments`` kinds of region; write labels (and optionally features)."""
    settings = Settings.checked(input_path, output_path, segments, seed, bands, features_path, memory_mb,
                                reference_path, sample_size, region)
    run = segment(BlockDescriptors(block, context, texture_weight), settings, progress or Progress())
    return KMeansResult(run.output, run.features, run.centres, run.valid_cells, run.label_windows, run.present)
