"""Latent KNN refinement (``segmenter:knn_refine``): each block revises its segment from the blocks that look like it.

Two formulations, one module each, share the checks, the reading of LABELS and FEATURES, the scan that counts the
usable blocks per id and the writer of the output (``knn_common``):

- ``method="graph"`` (the default, ``knn_graph.GraphFormulation``): edge-aware label propagation on the block grid,
  window by window, here or on a Dask cluster;
- ``method="predecessor"`` (``knn_global.GlobalFormulation``): the earlier global KNN among index points (cKDTree),
  the predecessor's method made exact and streaming (its defaults: ``PREDECESSOR_DEFAULTS``).

A block's seed label is the first non-zero pixel of the block in row-major order; a usable block has a seed label
and valid features. Pixels that are 0 stay 0; pixels of blocks without features keep their label; ITERATIONS = 0
returns LABELS unchanged. Every value is computed element-wise in a fixed order, so tiled and untiled runs (and runs
on a cluster) are byte-identical.

Centres (both): the label raster's SEGMENTER_CENTRES (row i is the centre of id i + 1), or, when they are absent
or were fitted in another feature space, the mean features of each id, from exact sums (window-independent).
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..rasters.feature_raster import FeatureRaster
from ..rasters.labels import LabelRaster, finish_label_raster, label_type
from ..rasters.palette import qualitative
from ..rasters.raster_io import AtomicRaster
from ..runtime.errors import InputError
from ..runtime.memory import within_budget
from ..runtime.outputs import Destination, prepare_outputs
from ..runtime.params import FEATURES, LABELS, OUTPUT
from ..runtime.progress import Progress
from .knn_common import (
    METHODS,
    Inputs,
    KnnSettings,
    _check_grids,
    _metadata_centres,
    _Reader,
    _style,
    block_seeds,
    log_grid,
)
from .knn_global import PREDECESSOR_DEFAULTS, GlobalFormulation, initial_posteriors, smooth
from .knn_graph import GraphFormulation

__all__ = ["METHODS", "PREDECESSOR_DEFAULTS", "KnnResult", "block_seeds", "initial_posteriors", "refine_knn",
           "smooth"]

# Defaults of the graph formulation (bench/eval_refine.py, bench/README.md)
NEIGHBORS = 8
TEMPERATURE = 1.0
MIX = 0.9
ITERATIONS = 8
SPATIAL_WEIGHT = 0.5
INDEX_SIZE = 50_000
FORMULATIONS = {"graph": GraphFormulation, "predecessor": GlobalFormulation}


@dataclass
class KnnResult:
    output: str
    segments: int
    centres: np.ndarray
    centres_source: str
    index_points: int
    scale: float
    windows: int


@within_budget
def refine_knn(
    labels_path: str,
    features_path: str,
    output_path: str,
    neighbors: int = NEIGHBORS,
    temperature: float = TEMPERATURE,
    mix: float = MIX,
    iterations: int = ITERATIONS,
    spatial_weight: float = SPATIAL_WEIGHT,
    seed: int = 0,
    index_size: int = INDEX_SIZE,
    memory_mb: float = 256,
    workers: int = -1,
    progress: Progress | None = None,
    method: str = "graph",
    scheduler=None,
) -> KnnResult:
    """Refine a label raster by the blocks that look alike in its feature raster (``segmenter:knn_refine``).

    Parameters
    ----------
    labels_path : str
        LABELS: the label raster to refine (ids 1..K, 0 = nodata).
    features_path : str
        FEATURES: the feature raster of the run that made LABELS (one cell per block).
    output_path : str
        OUTPUT: the refined label raster (GeoTIFF; same grid, ids, colours and names).
    neighbors, temperature, mix, iterations, spatial_weight, index_size : number
        NEIGHBORS, TEMPERATURE, MIX, ITERATIONS, SPATIAL_WEIGHT, INDEX_SIZE (the defaults are the graph
        formulation's; the earlier formulation's are ``PREDECESSOR_DEFAULTS``).
    seed : int
        SEED of the index sample.
    memory_mb : float
        MEMORY_MB: working memory (window sizes, GDAL's block cache); the result does not depend on it.
    workers : int
        Threads (-1 = one per CPU); the result does not depend on it.
    progress : Progress, optional
        Reports, logs and cancel.
    method : str
        "graph" (edge-aware label propagation, the default) or "predecessor" (the earlier global KNN).
    scheduler : str or distributed.Client, optional
        A Dask scheduler to refine the windows on (method "graph"; the workers read LABELS and FEATURES themselves:
        shared storage); None or empty: this process. The same bytes either way.

    Returns
    -------
    KnnResult
        K, the centres used and where they came from, the index size, the feature scale and the windows.
    """
    settings = KnnSettings.checked(labels_path, features_path, output_path, neighbors, temperature, mix, iterations,
                                   spatial_weight, seed, index_size, memory_mb, workers, method, scheduler)
    return _run(settings, progress or Progress())


def _run(settings, progress):
    """Open and check the inputs, run the formulation (windows, scan, centres, fit, refine), write the output."""
    label_raster = LabelRaster.open(settings.labels_path, "label raster (LABELS)",
                                    " (A segmentation's Float32 FEATURES raster goes to FEATURES.)")
    feature_raster = FeatureRaster.open(settings.features_path)
    inputs = formulation = None
    try:
        labels, features = label_raster.dataset, feature_raster.dataset
        grid = _check_grids(labels, features, settings.labels_path, settings.features_path, feature_raster.meta)
        outputs = prepare_outputs({LABELS: settings.labels_path, FEATURES: settings.features_path},
                                  [Destination(OUTPUT, settings.output_path, "labels")], progress)
        centres, segments, reason = _metadata_centres(label_raster.meta, feature_raster.meta, features.RasterCount)
        output_features = _output_features(label_raster.meta, feature_raster.meta, grid, progress)
        inputs = Inputs(settings, _Reader(label_raster, feature_raster, grid), grid, features.RasterCount,
                        gdal.GetDataTypeSize(label_raster.band.DataType) // 8, label_raster.band.GetBlockSize()[1],
                        segments, centres is None, progress)
        formulation = FORMULATIONS[settings.method](inputs)
        windows = formulation.windows()
        log_grid(progress, grid, features.RasterCount, windows)
        counts, sums = formulation.scan(windows)
        centres, segments, counts = _centres(inputs, counts, sums, centres, segments, reason)
        with ThreadPoolExecutor(settings.threads) as pool:
            index_points, scale2, knn = formulation.fit(windows, centres, counts, reason is not None, pool)
            metadata = dict(
                method="knn_refine", seed=settings.seed,
                centres=[[None if not np.isfinite(v) else float(v) for v in row] for row in centres],
                features=output_features, knn=knn,
                refined_from=dict(method=label_raster.meta.method, labels=os.path.basename(settings.labels_path),
                                  features=os.path.basename(settings.features_path)),
                # the merge tree (ids unchanged) and the choice of K, so segmenter:merge can re-cut the result
                **{key: label_raster.meta.raw[key] for key in ("sizes", "merges", "criterion")
                   if key in label_raster.meta.raw})
            _write(formulation, windows, outputs, label_raster, segments, metadata, pool)
    finally:
        label_raster.close()  # close the inputs even when a traceback keeps this frame
        if formulation is not None:
            formulation.close()
        inputs = formulation = feature_raster = None
    return KnnResult(settings.output_path, segments, centres, "metadata" if reason is None else "recomputed",
                     index_points, scale2, len(windows))


def _output_features(label_meta, feature_meta, grid, progress):
    """The FeatureMeta items the output carries: those LABELS was made with, on the grid of FEATURES."""
    made_with = label_meta.features
    if made_with.stride not in (None, grid.stride):
        progress.warn(f"LABELS were made on a grid of {made_with.stride} px but FEATURES has {grid.stride} px "
                      f"cells: the output follows the {grid.stride} px cells. Use the FEATURES of the run that "
                      f"made LABELS to keep its detail.")
        return {**feature_meta.raw, "stride": grid.stride}
    return made_with.raw or feature_meta.raw or None


def _centres(inputs, counts, sums, centres, segments, reason):
    """(centres, K, usable blocks of ids 1..K): the metadata's centres, or the mean features per id (exact sums)."""
    settings, progress = inputs.settings, inputs.progress
    if not counts.sum():
        detail = " so the segment centres cannot be recomputed either" if centres is None else ""
        raise InputError(
            f"No block has both a segment id in LABELS '{settings.labels_path}' and valid values in FEATURES "
            f"'{settings.features_path}'{detail}. Choose the FEATURES written by the same run as LABELS."
        )
    if centres is None:
        segments = max(segments or 0, len(counts) - 1)
        centres = sums.means(counts, segments, inputs.channels)
        progress.log(f"Segment centres recomputed as mean features per segment ({reason}).")
    else:
        progress.log("Segment centres read from the LABELS metadata.")
    return centres, segments, np.pad(counts, (0, segments + 1 - len(counts)))[1:]


def _write(formulation, windows, outputs, label_raster, segments, metadata, pool):
    """The refined windows into OUTPUT (the input's colours and names), put in place by ``outputs.commit``."""
    inputs = formulation.inputs
    grid, progress, labels = inputs.grid, inputs.progress, label_raster.dataset
    colours, names = _style(label_raster.band, label_raster.meta, segments)
    output = AtomicRaster(inputs.settings.output_path, grid.width, grid.height, 1, label_type(segments),
                          labels.GetGeoTransform(can_return_null=True), labels.GetProjection(),
                          palette=colours or qualitative(segments), gcps_from=labels, group=outputs)
    with outputs, output:
        progress.start("Refining blocks")
        changed = formulation.refine(windows, output, pool)
        pixels = grid.width * grid.height
        progress.log(f"Refinement changed {changed} of {pixels} pixels ({100 * changed / max(1, pixels):.1f} %).")
        finish_label_raster(output, segments, metadata, colours=colours, names=names)
        outputs.commit()
