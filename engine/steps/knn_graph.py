"""Latent KNN refinement, the graph formulation (the default; numerics in ``latent_graph``): edge-aware label
propagation on the block grid, window by window, here or on a Dask cluster.

1. One pass ("Sampling the index", ``knn_common.scan``) checks the ids, counts the usable blocks, sums their features
   exactly when the centres must be recomputed, and draws the index: the INDEX_SIZE usable blocks with the smallest
   seeded hash keys (``sampling.BlockSample``, the same whatever the windows) with the ids of their right and lower
   neighbours.
2. Calibration on the index: s^2 = mean ||f - c_seed||^2, and the temperature whose softmax(-||f - c||^2 / (T s^2))
   best predicts the neighbours' ids (``latent_graph.fit_temperature``); TEMPERATURE multiplies it.
3. Window by window, each grown by the model's halo: ``latent_graph.refine_window``, then each pixel's id from the
   scores interpolated bilinearly between block centres (``knn_common.write_windows`` writes them in order).
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..rasters.feature_raster import usable_features
from ..rasters.windows import Window, cells
from ..segmentation.sampling import BlockSample, hash_keys
from .knn_common import (
    Inputs,
    ScanStep,
    _Grid,
    block_seeds,
    label_dtype,
    open_reader,
    scan,
    tally_window,
    usable_cells,
    write_windows,
)
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
from .window_step import Executor, WindowStep

STAGES = [("Sampling the index", 8), ("Refining blocks", 92)]


def _graph_window_pixels(memory_mb, stride, channels, label_bytes, segments, links):
    """Label pixels per window core: label copies per pixel plus features, scores and link weights per block."""
    per_block = 4 * (2 * channels + 7 * segments + links) + 24
    per_pixel = 7 * label_bytes + 3 + per_block / (stride * stride)
    return max(stride * stride, int(memory_mb * 2**20 / per_pixel))


@dataclass(frozen=True)
class GraphScanStep(ScanStep):
    """``ScanStep`` plus the window's candidates for the index: (the linear indices, the index vectors) of its
    ``size`` blocks with the smallest seeded keys, with the ids of their right and lower neighbours."""

    size: int = 0
    seed: int = 0

    stage: ClassVar[str] = "Sampling the index"
    task_name: ClassVar[str] = "scan"

    def read(self, reader, window):
        grid = self.grid
        # one more block row and column: the neighbours of the window's last blocks
        grown = Window(window.xoff, window.yoff, min(grid.width - window.xoff, window.width + grid.stride),
                       min(grid.height - window.yoff, window.height + grid.stride))
        return super().read(reader, grown)

    def compute(self, window, grown_pixels, grown_values, nodata, tick=None):
        stride = self.grid.stride
        pixels = grown_pixels[: window.height, : window.width]
        rows, cols = cells(window.height, stride), cells(window.width, stride)
        cells_found = usable_cells(self.grid, window, pixels, grown_values[:, :rows, :cols], nodata)
        window_counts, sums, found = tally_window(cells_found, pixels, self.recompute, self.segments,
                                                  self.labels_path)
        linear, seeds, rows, cols, values, _ = found
        if len(linear) > self.size:
            chosen = np.sort(np.argpartition(hash_keys(linear, self.seed), self.size - 1)[: self.size])
        else:
            chosen = np.arange(len(linear))
        around = block_seeds(grown_pixels, stride)
        padded = np.zeros((around.shape[0] + 1, around.shape[1] + 1), np.float64)
        padded[: around.shape[0], : around.shape[1]] = around
        corner = window.on_grid(stride)
        local_rows, local_cols = rows[chosen] - corner.yoff, cols[chosen] - corner.xoff
        vectors = np.concatenate([linear[chosen, None].astype(np.float64), values[:, chosen].T.astype(np.float64),
                                  seeds[chosen, None].astype(np.float64), padded[local_rows, local_cols + 1, None],
                                  padded[local_rows + 1, local_cols, None]], axis=1)
        return window_counts, sums, (linear[chosen], vectors)


def _calibrate(index, centres, offsets, settings):
    """The graph model: s^2 and the prior's temperature fitted on the index (see latent_graph.fit_temperature)."""
    features, ids, right, lower = index
    distances = squared_distances(features, centres)
    scale2 = scale2_of(distances, ids)
    rows = np.arange(len(ids))
    sources = np.concatenate([rows[right > 0], rows[lower > 0]])
    neighbour_ids = np.concatenate([right[right > 0], lower[lower > 0]])
    fitted = fit_temperature(distances, scale2, sources, neighbour_ids)
    model = GraphModel(centres=np.asarray(centres, np.float64), scale2=scale2,
                       temperature=settings.temperature * fitted, offsets=offsets,
                       spatial_weight=settings.spatial_weight, mix=settings.mix, iterations=settings.iterations)
    return model, fitted


class _GraphInputs:
    """LABELS and FEATURES, and how a window's rows of blocks are spread over threads (``mapper``)."""

    def __init__(self, reader, mapper=map):
        self.reader, self.mapper = reader, mapper


@dataclass(frozen=True)
class RefineStep(WindowStep):
    """A window's refined labels and the pixels changed: the window grown by the model's halo, refined, cut back."""

    labels_path: str
    features_path: str
    grid: _Grid
    model: GraphModel
    dtype: str

    stage: ClassVar[str] = "Refining blocks"
    workers: ClassVar[int] = 1  # a window's rows of blocks run on the run's threads (``mapper``)
    overlap: ClassVar[bool] = False  # its windows are planned one at a time in MEMORY_MB
    ticks: ClassVar[bool] = True

    @property
    def halo(self):
        return self.model.halo * self.grid.stride

    @property
    def paths(self):
        return (self.labels_path, self.features_path)

    def open(self):
        return _GraphInputs(open_reader(self.labels_path, self.features_path, self.grid))

    def read(self, inputs, window):
        reader = inputs.reader
        grown = window.grown(self.halo, self.grid.width, self.grid.height)
        pixels = reader.pixels(grown)
        values = reader.features.read(grown.on_grid(self.grid.stride))
        reader.release_cache()
        return grown, pixels, values, reader.features.nodata, inputs.mapper

    def compute(self, window, grown, pixels, values, nodata, mapper, tick=None):
        model, stride, dtype = self.model, self.grid.stride, np.dtype(self.dtype).type
        y0, x0 = window.yoff - grown.yoff, window.xoff - grown.xoff
        original = pixels[y0 : y0 + window.height, x0 : x0 + window.width]
        if model.iterations == 0:  # the segments as they are
            return original, 0
        seeds = block_seeds(pixels, stride)
        usable = (seeds > 0) & usable_features(values, nodata)
        scores = refine_window(values, label_shares(pixels, seeds, stride, model.segments), usable, model,
                               mapper=mapper)
        if tick:
            tick(0.8)
        core_rows, core_cols = window.on_grid(stride).within(grown.on_grid(stride)).slices
        core = (core_rows.start, core_rows.stop, core_cols.start, core_cols.stop)
        refined = pixel_labels(scores, usable, stride, core, dtype, mapper)[: window.height, : window.width]
        # pixels of blocks that are not refined (no features) keep their label; nodata stays nodata
        result = np.where((refined > 0) & (original != 0), refined, original).astype(dtype)
        return result, int(np.count_nonzero(result != original))


class GraphFormulation:
    """The graph formulation of ``refine_knn`` over ``inputs`` (a ``knn_common.Inputs``): ``windows``, ``scan``,
    ``fit`` and ``refine`` in this order, then ``close``."""

    def __init__(self, inputs: Inputs):
        settings = inputs.settings
        self.inputs, self.settings = inputs, settings
        self.offsets = graph_offsets(settings.neighbors)
        self.executor = Executor(settings.scheduler, inputs.progress, settings.memory_mb)
        self.index = self.model = None

    def windows(self):
        """The windows (cores) that fit MEMORY_MB with their halo, scores and links."""
        inputs = self.inputs
        inputs.progress.plan(STAGES)
        inputs.progress.start("Sampling the index")
        max_pixels = _graph_window_pixels(self.settings.memory_mb, inputs.grid.stride, inputs.channels,
                                          inputs.label_bytes, max(inputs.segments or 0, 8), len(self.offsets))
        return inputs.plan_windows(max_pixels)

    def scan(self, windows):
        """Usable blocks and exact sums per id, and the index (``self.index``: features (n, C), ids, right, lower,
        sorted by cell; None when no block is usable). On a cluster the workers scan the windows (integer counts and
        sums, merged here: exact)."""
        inputs, settings = self.inputs, self.settings
        sampler = BlockSample(settings.index_size, settings.seed)
        step = GraphScanStep(settings.labels_path, settings.features_path, inputs.grid, inputs.recompute,
                             inputs.segments, settings.index_size, settings.seed)
        counts, sums = scan(self.executor.map(step, windows, inputs.reader), inputs.recompute,
                            lambda extra: sampler.offer(*extra))
        if len(sampler):
            vectors = sampler.vectors[np.argsort(sampler.vectors[:, 0], kind="stable")]
            ids = vectors[:, -3:].astype(np.int64)
            self.index = (vectors[:, 1:-3], ids[:, 0], ids[:, 1], ids[:, 2])
        return counts, sums

    def fit(self, windows, centres, counts, recomputed, pool):
        """Calibrate the model on the index; (index points, s^2, the run's ``knn`` metadata)."""
        settings = self.settings
        self.model, fitted = _calibrate(self.index, centres, self.offsets, settings)
        index_points, scale2 = len(self.index[1]), self.model.scale2
        self.inputs.progress.log(
            f"Index: {index_points} blocks; feature scale s^2 = {scale2:.6g}; fitted temperature {fitted:.4g} (x "
            f"TEMPERATURE {settings.temperature:g}); {len(self.offsets)} neighbours per block, halo "
            f"{self.model.halo} blocks")
        knn = dict(method="graph", neighbors=settings.neighbors, links=len(self.offsets),
                   temperature=settings.temperature, fitted_temperature=fitted, mix=settings.mix,
                   iterations=settings.iterations, spatial_weight=settings.spatial_weight,
                   index_size=settings.index_size, index_points=index_points, scale2=scale2,
                   centres="recomputed" if recomputed else "metadata")
        return index_points, scale2, knn

    def refine(self, windows, output, pool):
        """Refine the windows (here: bands of block rows on ``pool``; or on the cluster) and write them in order;
        the pixels changed."""
        inputs, settings = self.inputs, self.settings
        step = RefineStep(settings.labels_path, settings.features_path, inputs.grid, self.model,
                          np.dtype(label_dtype(output)).str)
        here = _GraphInputs(inputs.reader, pool.map if settings.threads > 1 else map)
        return write_windows(self.executor.map(step, windows, here), output)

    def close(self):
        self.executor.close()
