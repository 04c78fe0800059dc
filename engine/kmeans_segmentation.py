"""Streaming K-Means segmentation of a raster of any size with bounded memory and exact results.

Pass 1 reads the input once, window by window, and writes the block descriptors (a Float32 raster on the
block grid) while keeping a seeded sample spread over the whole raster. The centres are fitted on that
sample (or taken from a reference label raster). Pass 2 reads the descriptors back, assigns every block
to its nearest centre and writes the labels on the input's pixel grid.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import partial

import numpy as np
from osgeo import gdal

from . import checks, distributed, kmeans
from .descriptors import QUANT, TEXTURE_WEIGHT, block_descriptors, feature_names
from .errors import InputError
from .label_pass import assign_cells, centres_for, tag_features, write_label_raster, write_windows
from .labels import MAX_SEGMENTS, read_reference
from .memory import block_alignment, within_budget
from .outputs import Destination, prepare_outputs, scratch_folder
from .pipeline import WORKERS, ordered_map
from .progress import Progress
from .raster_io import AtomicRaster, open_input, scaled_geotransform, value_ranges
from .sampling import BlockSample, hash_keys
from .windows import plan_windows

BYTES_PER_PIXEL = 24  # working memory per window pixel in pass 1 (input, int32 copies, padding, masks)
# Tiles 16 cells tall: a window writes (and pass 2 reads) whole tiles but for the two it shares with its neighbours.
# With 256-cell tiles, every window of a wide raster rewrote a whole row of 1.8 MB tiles (3x slower at 1 GPix).
FEATURE_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=16", "BIGTIFF=IF_SAFER"]
DESCRIPTOR = "lab_mean_std"


@dataclass
class KMeansResult:
    output: str
    features: str | None
    centres: np.ndarray
    valid_blocks: int
    windows: int
    present: int = 0  # segments that occur in the output (the SEGMENTS output; fewer than K on uniform rasters)


def _validate(raster, segments, block):
    if not 2 <= segments <= MAX_SEGMENTS:
        raise InputError(f"SEGMENTS must be between 2 and {MAX_SEGMENTS}; got {segments}.")
    if block < 1:
        raise InputError(f"BLOCK_SIZE must be at least 1 pixel; got {block}.")
    if block > max(raster.width, raster.height):  # thinner rasters are fine: their blocks are partial
        raise InputError(
            f"BLOCK_SIZE {block} px is larger than the raster ({raster.width} x {raster.height} px). "
            f"Choose a BLOCK_SIZE of at most {max(raster.width, raster.height)}."
        )


def _quantiser(raster, reference=None):
    """Function turning raw pixels into integers on the 0..255 scale (times QUANT unless 8-bit)."""
    ranges = value_ranges(raster, reference)
    return (*quantiser(ranges), ranges)


def quantiser(ranges):
    """(quantise, quant) for the (lo, hi) ``ranges`` per band, or None for 8-bit input."""
    if ranges is None:
        return (lambda pixels: pixels), 1
    lo = np.array([r[0] for r in ranges])[:, None, None]
    scale = np.array([255.0 * QUANT / (r[1] - r[0]) for r in ranges])[:, None, None]

    def quantise(pixels):
        scaled = np.nan_to_num((pixels.astype(np.float64) - lo) * scale, nan=0.0)
        return np.clip(np.rint(scaled), 0, 255 * QUANT).astype(np.int32)

    return quantise, QUANT


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
    scheduler=None,
):
    """Segment ``input_path`` into ``segments`` kinds of region; write labels (and optionally features).

    ``scheduler``: a Dask scheduler's address or a ``distributed.Client`` to run the windows on (see
    ``engine/distributed.py``); None or empty: this process. The result is the same bytes either way."""
    progress = progress or Progress()
    input_path, output_path = checks.path("INPUT", input_path), checks.path("OUTPUT", output_path)
    features_path = checks.path("FEATURES", features_path, optional=True)
    reference_path = checks.path("REFERENCE", reference_path, optional=True)
    segments, block = checks.whole("SEGMENTS", segments), checks.whole("BLOCK_SIZE", block)
    seed, bands, memory_mb = checks.whole("SEED", seed, 0), checks.bands(bands), checks.memory(memory_mb)
    context, sample_size = checks.whole("context", context, 0), checks.whole("sample_size", sample_size, 1)
    texture_weight = checks.number("texture_weight", texture_weight, 0)
    raster = open_input(input_path, bands, region=region)
    _validate(raster, segments, block)
    outputs = prepare_outputs(
        {"INPUT": input_path, "REFERENCE": reference_path, "MASK": region.mask_path if region else None},
        [Destination("OUTPUT", output_path, "labels"), Destination("FEATURES", features_path, optional=True)],
        progress)
    reference = read_reference(reference_path) if reference_path else None
    channels = len(feature_names(len(raster.bands)))
    if reference is not None:
        _check_reference(reference, reference_path, channels, block)
        segments = int(reference["k"])

    progress.plan([("Measuring the raster", 1), ("Describing blocks", 55), ("Fitting centres", 5),
                   ("Assigning segments", 39)])
    progress.start("Measuring the raster")
    quantise, quant, ranges = _quantiser(raster, reference)
    max_pixels = memory_mb * 2**20 // (BYTES_PER_PIXEL * (WORKERS + 1))  # windows in flight
    windows = plan_windows(raster.width, raster.height, max_pixels, step=block, **block_alignment(raster))
    grid_w, grid_h = -(-raster.width // block), -(-raster.height // block)
    progress.log(f"{raster.width} x {raster.height} px, {len(windows)} windows, block grid {grid_w} x {grid_h}")

    cluster = distributed.connect(scheduler, progress, memory_mb)
    scratch = None
    if not features_path:
        scratch = scratch_folder()
    feature_target = features_path or os.path.join(scratch, "features.tif")
    try:
        with outputs, AtomicRaster(
            feature_target, grid_w, grid_h, channels, gdal.GDT_Float32,
            scaled_geotransform(raster.geotransform, block), raster.projection, FEATURE_OPTIONS,
            gcps_from=raster.dataset, gcp_scale=block, group=outputs if features_path else None,
            name=None if features_path else "the scratch feature raster",
        ) as features:
            progress.start("Describing blocks")
            describe = partial(block_descriptors, block=block, context=context, quant=quant,
                               texture_weight=texture_weight)
            on_cluster = None if cluster is None else (cluster, distributed.RasterSource(
                input_path, tuple(bands) if bands else None, region), (block, context, ranges, texture_weight))
            sample, valid_blocks = _describe(raster, windows, block, context, quantise, describe, features,
                                             sample_size, seed, progress, on_cluster, bool(features_path))
            centres = centres_for(
                sample, valid_blocks, segments, reference,
                lambda points: kmeans.order_by_brightness(kmeans.fit(points, segments, seed=seed,
                                                                     check=progress.check)),
                progress, input_path, raster.bands, "blocks", "Choose fewer SEGMENTS or a smaller BLOCK_SIZE.")
            feature_meta = dict(kind=DESCRIPTOR, names=feature_names(len(raster.bands)), stride=block,
                                context=context, texture_weight=texture_weight, bands=raster.bands, input_ranges=ranges)
            tag_features(features, feature_meta)

            present = write_label_raster(raster, windows, block, features.dataset, centres, output_path, dict(
                method="kmeans", seed=seed, centres=centres.tolist(), features=feature_meta,
                reference=os.path.basename(reference_path) if reference_path else None,
            ), progress, group=outputs, assign=None if cluster is None else partial(
                _assign_on_cluster, on_cluster=on_cluster))
            if features_path:
                features.commit()
            else:
                features.abort()
            outputs.commit()
    finally:
        raster.dataset = None
        if cluster is not None:
            cluster.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return KMeansResult(output_path, features_path, centres, valid_blocks, len(windows), present)


def _check_reference(reference, path, channels, block):
    centres = reference["centres"]
    features = reference.get("features") or {}
    if centres.ndim != 2 or centres.shape[1] != channels or features.get("kind") != DESCRIPTOR:
        raise InputError(
            f"The reference '{path}' was made with other features ({features.get('kind')}, "
            f"{centres.shape[-1]} channels); this run has {channels} {DESCRIPTOR} channels. Use the same BANDS "
            f"count and method as the reference."
        )
    if features.get("stride") != block:
        raise InputError(
            f"The reference '{path}' used BLOCK_SIZE {features.get('stride')}; this run uses {block}. "
            f"Use the same BLOCK_SIZE."
        )


def _read_grown(raster, window, block, context):
    """The window grown by ``context`` blocks: its pixels and validity (GDAL: one thread per dataset)."""
    grown = window.grown(context * block, raster.width, raster.height)
    pixels = raster.read(grown.xoff, grown.yoff, grown.width, grown.height)
    valid = raster.read_valid(grown.xoff, grown.yoff, grown.width, grown.height, pixels)
    return window, grown, pixels, valid  # the input's blocks stay in GDAL's capped cache for the next windows


def _window_descriptors(window, grown, pixels, valid, quantise, describe, block):
    """Descriptors (rows, cols, C) and block validity of the window's own blocks."""
    descriptors, block_valid = describe(quantise(pixels), valid)
    top, left = (window.yoff - grown.yoff) // block, (window.xoff - grown.xoff) // block
    rows, cols = -(-window.height // block), -(-window.width // block)
    return descriptors[top : top + rows, left : left + cols], block_valid[top : top + rows, left : left + cols]


def _valid_cells(window, descriptors, block_valid, block, grid_w):
    """Linear block indices and descriptors of the window's valid blocks."""
    row_index, col_index = np.nonzero(block_valid)
    linear = (row_index + window.yoff // block).astype(np.int64) * grid_w + col_index + window.xoff // block
    return linear, descriptors[row_index, col_index]


def _describe_on_worker(window, source, settings):
    """A window's descriptors computed on a Dask worker, which opens the input itself."""
    block, context, ranges, texture_weight = settings
    raster = source.open()
    quantise, quant = quantiser(ranges)
    describe = partial(block_descriptors, block=block, context=context, quant=quant, texture_weight=texture_weight)
    return _window_descriptors(*_read_grown(raster, window, block, context), quantise, describe, block), raster


def descriptors_task(window, source, settings, grid_w, sample_size, seed, keep_descriptors):
    """Worker task of pass 1: (descriptors or None, linear indices, vectors, valid count) of a window. Without
    ``keep_descriptors`` only the ``sample_size`` valid blocks with the smallest seeded keys come back: the
    global sample (the smallest keys of all) is among them, so the driver's sample is the same."""
    (descriptors, block_valid), _ = _describe_on_worker(window, source, settings)
    linear, vectors = _valid_cells(window, descriptors, block_valid, settings[0], grid_w)
    count = len(linear)
    if not keep_descriptors:
        descriptors = None
        if count > sample_size:
            chosen = np.sort(np.argpartition(hash_keys(linear, seed), sample_size - 1)[:sample_size])
            linear, vectors = linear[chosen], vectors[chosen]
    return descriptors, linear, vectors, count


def label_task(window, source, settings, centres):
    """Worker task of pass 2: the window's labels, from its descriptors computed again (exact integer sums: the
    same values as pass 1 wrote), so no feature raster has to be shared with the workers."""
    (descriptors, _), raster = _describe_on_worker(window, source, settings)
    rows, cols, channels = descriptors.shape
    pixel_valid = raster.read_valid(window.xoff, window.yoff, window.width, window.height) if raster.has_mask \
        else None
    return assign_cells(window, descriptors.reshape(rows * cols, channels), pixel_valid, settings[0], centres)


def _assign_on_cluster(raster, windows, stride, features, centres, labels, progress, present=None, on_cluster=None):
    cluster, source, settings = on_cluster
    write_windows(cluster.ordered_map(label_task, windows, source, settings, cluster.share(np.asarray(centres))),
                  windows, labels, progress, present)


def _describe(raster, windows, block, context, quantise, describe, features, sample_size, seed, progress,
              on_cluster=None, keep_descriptors=True):
    sample = BlockSample(sample_size, seed)
    grid_w = -(-raster.width // block)
    valid_blocks = 0

    def read(window):
        return _read_grown(raster, window, block, context)

    def compute(window, grown, pixels, valid):
        descriptors, block_valid = _window_descriptors(window, grown, pixels, valid, quantise, describe, block)
        linear, vectors = _valid_cells(window, descriptors, block_valid, block, grid_w)
        return descriptors, linear, vectors, len(linear)

    if on_cluster is None:
        results = ordered_map(read, compute, windows)
    else:
        cluster, source, settings = on_cluster
        results = cluster.ordered_map(descriptors_task, windows, source, settings, grid_w, sample_size, seed,
                                      keep_descriptors)
    for number, (window, (descriptors, linear, vectors, count)) in enumerate(results):
        if descriptors is not None:
            for channel in range(descriptors.shape[-1]):
                features.write(descriptors[..., channel], window.xoff // block, window.yoff // block, channel + 1)
        sample.offer(linear, vectors)
        valid_blocks += count
        features.release_cache()
        progress.update((number + 1) / len(windows), f"Describing blocks ({number + 1}/{len(windows)} windows)")
    return sample.vectors, valid_blocks
