"""CNN segmentation: embeddings from an ONNX model, tiled and seam-free, then K-Means on the embeddings.

One inference pass: the raster is cut into tiles whose cores tile the stride grid exactly; each tile is read
with a halo of at least the model's receptive field (rounded up to the stride), tiles of equal shape are
batched, and only the cores' embeddings are kept. They go to a feature raster (C Float32 bands on the stride
grid, NaN = nodata) while a seeded sample spread over the whole raster is kept for the fit. Centres are
fitted on that sample (or taken from a reference label raster); then the feature raster is read back and every
pixel of the input's grid takes the nearest centre, with the distances interpolated bilinearly between cell
centres (or, with upsample="nearest", its cell's nearest centre). The network never runs twice over a cell.

Pixels outside the raster are a reflection of the raster (the same for every tile layout, so tile and batch
sizes do not change the result beyond float rounding); invalid pixels (nodata, alpha = 0, NaN) enter the
network as the model's mean colour and stay nodata in every output.

Models without a finite receptive field (``global_context``: ViTs, squeeze-and-excitation CNNs) have their
overlapping tiles blended instead (engine/segmentation/blended_tiles.py). On a Dask cluster (SCHEDULER) the batches run
as ``embed_task`` on the workers (the model's bytes sent once) and the label windows through ``Cluster.mapper``; a
blended model embeds in this process and the cluster assigns the segments.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..backends import distributed, model_contract
from ..backends.onnx_runtime import DEVICES, PROVIDERS, import_onnxruntime, load_model, normaliser
from ..rasters.feature_raster import TILE_OPTIONS
from ..rasters.metadata import FeatureMeta
from ..rasters.raster_io import byte_stretch, value_ranges
from ..rasters.region import Region
from ..rasters.windows import Window, cells, plan_windows
from ..runtime import checks
from ..runtime.errors import InputError
from ..runtime.memory import within_budget
from ..runtime.pipeline import WORKERS
from ..runtime.progress import Progress
from . import blended_tiles, kmeans
from .hierarchy import K_MAX, K_MIN
from .label_pass import write_labels
from .pipeline import FeatureExtractor, Settings, embedding_cells, segment
from .upsampling import write_labels_bilinear

KIND = "cnn"
FEATURE_OPTIONS = TILE_OPTIONS
TILE_BYTES_PER_PIXEL = 160  # input copies + network activations per tile pixel (measured peak ~ 130 B/px)
UPSAMPLING = ("bilinear", "nearest")
# TILE_SIZE 0 with a finite receptive field: tiles of about this many px on a side (never below the model's
# tile_size, and as MEMORY_MB allows), run one at a time on the CPU. The network's cost per pixel is the same from
# 256 to 1024 px and grows beyond (caches), while the halo run around each core shrinks: 25 MPix take 27.6 MPix
# through the network with 876 px tiles, 29.8 with the shipped model's 512 (bench/bench_cnn_vs_kmeans.py prints
# ONNX Runtime alone per geometry). The embeddings are the same whatever the tile (cores + halo >= receptive field).
NETWORK_TILE = 1024
# On the CPU a piece of work handed to a worker is at least this many pixels of tiles (BATCH_SIZE at most): 1 MPix
# balances 2 cores to within a tile at the end and keeps the per-piece overhead small.
CPU_PIECE_PIXELS = 1 << 20
# Embeddings no FEATURES file asks for stay in a MEM dataset when they take at most this share of MEMORY_MB (25 MPix
# at stride 4, 6 bands: 37.5 MB): the label pass reads them back without writing and reading a scratch file.
MEMORY_SHARE = 0.25


@dataclass
class CnnResult:
    output: str
    features: str | None
    centres: np.ndarray
    valid_cells: int
    tiles: int
    batches: int
    tile_shape: tuple  # (height, width) px of the tiles given to the network, halo included
    provider: str
    model: dict
    present: int = 0  # segments that occur in the output (the SEGMENTS output)
    threads: int = 0  # the session's intra-op threads (0 = ONNX Runtime's default)
    windows: int = 0  # windows of the label pass (MEMORY_MB)
    criterion: dict = None  # SEGMENTS = 0: the automatic choice of K (engine/segmentation/hierarchy.py)


@dataclass(frozen=True)
class TileLayout:
    """Tiles of ``height`` x ``width`` px whose ``core`` parts (multiples of the stride) tile the raster."""

    halo: int
    core_width: int
    core_height: int
    origins: tuple  # (x, y) of each core, row by row

    @property
    def width(self):
        return self.core_width + 2 * self.halo

    @property
    def height(self):
        return self.core_height + 2 * self.halo


def plan_tiles(width, height, stride, halo, tile_size):
    """Cores of at most ``tile_size - 2 * halo`` px (rounded down to the stride; shrunk to the raster if it is
    smaller), as few per row and column as that allows, and then as small as covers the raster in that many: the
    last row and column of tiles no longer reach far past the raster (5000 px: 11 cores of 456 px, not 472 of
    which the last holds 280 px), and the network runs over 6 % fewer pixels. Embeddings are the same whatever
    the tile size, so this changes no result."""
    core = (tile_size - 2 * halo) // stride * stride
    if core < stride:
        raise InputError(
            f"TILE_SIZE {tile_size} px leaves no room for the model's halo of {halo} px on each side. Choose a "
            f"TILE_SIZE of at least {2 * halo + stride} px (0 = the model's recommended size)."
        )
    padded_w, padded_h = cells(width, stride) * stride, cells(height, stride) * stride

    def balanced(size):
        count = cells(size, core)  # tiles along this side
        return cells(cells(size, count), stride) * stride  # the smallest stride multiple that covers size in count

    core_w, core_h = balanced(padded_w), balanced(padded_h)
    origins = tuple((x, y) for y in range(0, padded_h, core_h) for x in range(0, padded_w, core_w))
    return TileLayout(halo, core_w, core_h, origins)


def network_tile(info, memory_bytes, runs=1):
    """The tile size of TILE_SIZE 0: the model's own ``tile_size`` for a model without a finite receptive field
    (blended tiles: the result depends on it); else NETWORK_TILE px, or less as ``memory_bytes`` allows ``runs``
    tiles at a time, but never below the model's ``tile_size``. Any of these gives the same embeddings."""
    if info.global_context:
        return info.tile_size
    fits = int((memory_bytes / (TILE_BYTES_PER_PIXEL * max(1, runs))) ** 0.5) // info.stride * info.stride
    return max(info.tile_size, min(NETWORK_TILE, fits))


def reflect_index(coordinates, size):
    """Raster index of virtual coordinates: the raster mirrored about its edge pixels, repeated as needed."""
    if size == 1:
        return np.zeros_like(coordinates)
    period = 2 * (size - 1)
    folded = np.mod(coordinates, period)
    return np.where(folded < size, folded, period - folded)


class TileReader:
    """Normalised network input, validity and brightness of tiles of the virtual (mirrored) raster."""

    def __init__(self, raster, info, layout, reference=None):
        self.raster = raster
        self.layout = layout
        self.stride = info.stride
        self.scale, self.offset = normaliser(info)
        self.ranges = value_ranges(raster, reference)
        self._stretch = None if self.ranges is None else byte_stretch(self.ranges)

    def read(self, x, y):
        """The GDAL part of the tile whose core starts at (x, y) (one thread only: a dataset is not thread-safe):
        the pixels and validity of the part of the raster it covers, and how to mirror them into the tile."""
        layout, raster = self.layout, self.raster
        x0, y0, width, height = x - layout.halo, y - layout.halo, layout.width, layout.height
        if x0 >= 0 and y0 >= 0 and x0 + width <= raster.width and y0 + height <= raster.height:
            pixels = raster.read(x0, y0, width, height)
            return pixels, raster.read_valid(x0, y0, width, height, pixels), None
        xs = reflect_index(np.arange(x0, x0 + width), raster.width)
        ys = reflect_index(np.arange(y0, y0 + height), raster.height)
        rx, ry = int(xs.min()), int(ys.min())
        rw, rh = int(xs.max()) - rx + 1, int(ys.max()) - ry + 1
        pixels = raster.read(rx, ry, rw, rh)
        return pixels, raster.read_valid(rx, ry, rw, rh, pixels), (ys - ry, xs - rx)

    def tile(self, x, y):
        """(input (3, H, W) float32, core cell validity (rows, cols), core cell brightness (rows, cols))."""
        return self.prepare(x, y, *self.read(x, y))

    def prepare(self, x, y, pixels, valid, mirror, out=None):
        """``tile`` from what ``read`` returned, the network input written to ``out`` (3, H, W) float32 if given:
        numpy only, so any thread can run it."""
        layout, stride, raster = self.layout, self.stride, self.raster
        halo = layout.halo
        if mirror is not None and (valid is not None or self._stretch is not None):  # mirrored copies first
            rows, cols = mirror  # rows, then columns, as runs of slices (np.take: 2.7x slower, 2-D fancy index 8x)
            pixels = _take_runs(_take_runs(pixels, rows, 1), cols, 2)
            valid = None if valid is None else _take_runs(_take_runs(valid, rows, 0), cols, 1)
            mirror = None
        network = np.empty((len(pixels), layout.height, layout.width), np.float32) if out is None else out
        core = (slice(halo, halo + layout.core_height), slice(halo, halo + layout.core_width))
        if self._stretch is not None:
            np.copyto(network, pixels, casting="unsafe")
            self._stretch(network)
            grey = network[0][core] + network[1][core]
            grey += network[2][core]
            network *= self.scale
        elif mirror is None:  # 8-bit: the values as float32 are exact, scaled straight from the bytes
            grey = np.add(pixels[0][core], pixels[1][core], dtype=np.uint16)  # exact: at most 765
            grey += pixels[2][core]
            np.multiply(pixels, self.scale, out=network)
        else:  # 8-bit at the raster's edge: scaled from the bytes read straight into their mirrored places
            rows, cols = mirror
            for target_rows, source_rows in _run_slices(rows):
                for target_cols, source_cols in _run_slices(cols):
                    np.multiply(pixels[:, source_rows, source_cols], self.scale,
                                out=network[:, target_rows, target_cols])
            # the core's pixels inside the raster (the rest is not counted below) as read: no mirror there
            top, left = int(rows[halo]), int(cols[halo])
            height, width = min(layout.core_height, raster.height - y), min(layout.core_width, raster.width - x)
            grey = np.zeros((layout.core_height, layout.core_width), np.uint16)
            inside = (slice(top, top + height), slice(left, left + width))
            np.add(pixels[0][inside], pixels[1][inside], out=grey[:height, :width], dtype=np.uint16)
            grey[:height, :width] += pixels[2][inside]
        network += self.offset
        if valid is not None:
            network[:, ~valid] = 0.0  # the model's mean colour
        # Core cells: valid when at least one of their own pixels inside the raster is valid.
        rows, cols = layout.core_height // stride, layout.core_width // stride
        inside_h, inside_w = raster.height - y, raster.width - x
        if valid is None:  # the pixels of a cell inside the raster, from the raster's edge alone
            grey[inside_h:] = 0  # a core starts inside the raster: both are positive
            grey[:, inside_w:] = 0
            counts = np.outer(np.clip(inside_h - stride * np.arange(rows), 0, stride),
                              np.clip(inside_w - stride * np.arange(cols), 0, stride)).astype(np.float32)
        else:
            inside = np.zeros((layout.core_height, layout.core_width), bool)
            inside[:inside_h, :inside_w] = True
            if valid is not None:
                inside &= valid[core]
            grey *= inside
            counts = _cell_sums(inside.astype(np.uint16), stride).astype(np.float32)
        brightness = _cell_sums(grey, stride).astype(np.float32) / (3.0 * np.maximum(counts, 1.0))
        return network, counts > 0, brightness


def _runs(index):
    """(start, stop, first, step) of the runs of ``index`` that step by +1 or -1: ``index[start:stop]`` equals
    ``first + step * arange(stop - start)``. Each run is taken as long as it goes from where the last one stopped
    (an element where the direction turns ends the run before it); other steps make runs of one."""
    index = np.asarray(index)
    steps = np.diff(index)
    # ends[i]: where the stretch of equal steps that steps[i] belongs to ends (exclusive)
    changes = np.flatnonzero(steps[1:] != steps[:-1]) + 1
    ends = np.repeat(np.append(changes, len(steps)), np.diff(np.concatenate([[0], changes, [len(steps)]])))
    runs, start = [], 0
    while start < len(index):
        step = int(steps[start]) if start < len(steps) else 0
        if step not in (1, -1):  # the last element, or a step of another size
            runs.append((start, start + 1, int(index[start]), 1))
            start += 1
            continue
        stop = int(ends[start]) + 1
        runs.append((start, stop, int(index[start]), step))
        start = stop
    return runs


def _run_slices(index):
    """(target, source) slice pairs: ``array[source]`` is ``np.take(array, index)[target]`` for each run of
    ``index`` (``_runs``)."""
    pairs = []
    for start, stop, first, step in _runs(np.asarray(index)):
        last = first + step * (stop - start - 1)
        source = slice(first, last + 1) if step == 1 else slice(first, last - 1 if last > 0 else None, -1)
        pairs.append((slice(start, stop), source))
    return pairs


def _take_runs(array, index, axis):
    """``np.take(array, index, axis)`` for indices made of a few ascending and descending runs (a mirrored
    raster edge), copied slice by slice."""
    shape = list(array.shape)
    shape[axis] = len(index)
    out = np.empty(shape, array.dtype)
    before = (slice(None),) * axis
    for target, source in _run_slices(index):
        out[before + (target,)] = array[before + (source,)]
    return out


def _cell_sums(plane, stride):
    """Sums over stride x stride cells of a (rows * stride, cols * stride) plane: float32 (summed as numpy's
    ``sum`` over rows, then columns, did) or uint16 (exact integer sums, at most 65535, as 8-bit grey values
    over cells of up to 9 x 9 px are; wider types for larger cells). Row by row and column by column, not
    ``sum`` over an axis of ``stride`` elements, which numpy walks element by element (3.5x slower)."""
    height, width = plane.shape
    if plane.dtype.kind == "f":
        return plane.reshape(height // stride, stride, width).sum(axis=1).reshape(
            height // stride, width // stride, stride).sum(axis=2)
    if stride * stride * 765 > np.iinfo(plane.dtype).max:
        plane = plane.astype(np.int64)
    rows = plane.reshape(height // stride, stride, width)
    total = rows[:, 0].copy()
    for offset in range(1, stride):
        total += rows[:, offset]
    columns = total.reshape(height // stride, width // stride, stride)
    cell = columns[:, :, 0].copy()
    for offset in range(1, stride):
        cell += columns[:, :, offset]
    return cell




class CnnEmbeddings(FeatureExtractor):
    """The embeddings of an ONNX model (engine/backends/onnx_runtime.py), tile by tile with a halo of at least its
    receptive field: one cell per ``stride`` x ``stride`` px, ``embed_dim`` channels.

    The pipeline's thread reads the tiles (GDAL; a dataset is not thread-safe) and writes the embeddings; worker
    threads scale the pixels, run the network and cut out the cores, ``model.runs`` networks at a time, each on one
    core (on a CPU, runs of one thread each use the cores better than one run over several threads, and no core
    waits for the reads or the writes). One worker per run, at least two, so that with one run the next batch is
    prepared while the network runs. Results are taken in tile order, so the output is the same whatever the
    thread count."""

    method = KIND
    stage = "Computing embeddings"
    stages = (("Loading the model", 1), ("Computing embeddings", 75), ("Fitting centres", 10),
              ("Assigning segments", 14))  # shares of the time measured on 25 MPix (bench/bench_cnn.py)
    unit = "tiles"
    advice = "Choose fewer SEGMENTS or a larger raster."
    feature_options = TILE_OPTIONS
    memory_share = MEMORY_SHARE
    grey_as_rgb = True
    direct_reads = True  # each pixel is read once but for the halos

    def __init__(self, model_path, device="auto", tile_size=0, batch_size=4, threads=0, upsample="bilinear"):
        self.model_path = checks.path("MODEL", model_path, optional=True)  # load_model says when there is none
        self.tile_size, self.batch_size = checks.whole("TILE_SIZE", tile_size), checks.whole("BATCH_SIZE", batch_size)
        self.threads, self.device, self.upsample = checks.whole("THREADS", threads), device, upsample
        if self.batch_size < 1:
            raise InputError(f"BATCH_SIZE must be at least 1 tile; got {self.batch_size}.")
        if self.tile_size < 0:
            raise InputError(f"TILE_SIZE must be 0 (the model's recommended size) or a size in px; got "
                             f"{self.tile_size}.")
        if device not in DEVICES:
            raise InputError(f"DEVICE must be one of {', '.join(DEVICES)}; got {device!r}.")
        if upsample not in UPSAMPLING:
            raise InputError(f"upsample must be one of {', '.join(UPSAMPLING)}; got {upsample!r}.")
        self.assign = write_labels_bilinear if upsample == "bilinear" else write_labels

    def check_arguments(self):
        import_onnxruntime(self.device)  # first: nothing else matters without it; the message says how to install it

    def check_raster(self, raster):
        self.raster = raster
        if len(raster.bands) != 3:
            raise InputError(
                f"The model takes 3 bands (red, green, blue); BANDS gives {len(raster.bands)}. Choose 3 bands, or "
                f"one band of a grey-scale raster (it is used three times)."
            )

    def other_inputs(self):
        return {"MODEL": self.model_path}

    def start(self, settings, progress):
        progress.start("Loading the model")
        self.model = load_model(self.model_path, self.device, self.threads, log=progress.log, warn=progress.warn)
        self.info = info = self.model.info
        self.stride, self.halo, self.channels = info.stride, info.halo, info.embed_dim
        self.cell_units = f"cells ({info.stride} x {info.stride} px each)"
        self.workers = max(self.model.runs, 2)

    def non_finite(self, masked, valid, progress):
        super().non_finite(masked, valid, progress, f"The model '{self.info.name}' gave non-finite embeddings",
                           " The model is broken for this raster: choose another MODEL, or check the model's export.")

    def reference_mismatch(self, reference):
        centres, feature_meta, info = reference.centres, reference.features, self.info
        used = feature_meta.details.get("model") or {}
        if feature_meta.kind != KIND or centres.ndim != 2:
            return (f"was made by {reference.method or 'another method'}, not segmenter:cnn. Choose a label "
                    f"raster made by segmenter:cnn with the same model.")
        if used.get("sha256") != info.sha256 or centres.shape[1] != info.embed_dim:
            return (f"was made with model {used.get('name')} (version {used.get('version')}, sha256 "
                    f"{str(used.get('sha256'))[:12]}); this run uses {info.name} (version "
                    f"{info.metadata.get('version')}, sha256 {info.sha256[:12]}). Use the same MODEL as the "
                    f"reference.")
        return None

    def plan(self, raster, settings, reference, progress):
        info, stride, halo, batch_size = self.info, self.stride, self.halo, self.batch_size
        tile_size = self.tile_size or network_tile(info, settings.memory_bytes, self.model.runs)
        self.layout = layout = plan_tiles(raster.width, raster.height, stride, halo, tile_size)
        # no finite receptive field: overlapping tiles, blended (engine/segmentation/blended_tiles.py)
        if info.global_context:
            blended_tiles.check_layout(layout, tile_size)
            progress.warn(blended_tiles.notes(info, layout))
        if model_contract.has_random_weights(info.metadata):
            progress.warn(f"{info.name} has RANDOM weights (exported for tests and benchmarks): its segments mean "
                          f"nothing.")
        fitting = max(1, int(settings.memory_bytes // (TILE_BYTES_PER_PIXEL * layout.width * layout.height)))
        if fitting < batch_size:
            progress.log(f"BATCH_SIZE {batch_size} lowered to {fitting} to stay within MEMORY_MB "
                         f"{settings.memory_mb:g}")
            batch_size = fitting
        if self.model.provider == PROVIDERS["cpu"]:  # tile by tile anyway: pieces of about CPU_PIECE_PIXELS
            batch_size = min(batch_size, max(1, CPU_PIECE_PIXELS // (layout.width * layout.height)))
        self.grid = grid = Window.whole(raster.width, raster.height).on_grid(stride)
        origins = layout.origins
        self.batches = cells(len(origins), batch_size)
        progress.log(
            f"{raster.width} x {raster.height} px; model {info.name}: stride {stride}, {info.embed_dim}-d embeddings, "
            f"receptive field {info.receptive_field} px -> halo {halo} px; {len(origins)} tiles of "
            f"{layout.width} x {layout.height} px ({layout.core_width} x {layout.core_height} px cores) in "
            f"{self.batches} batches of up to {batch_size}; feature grid {grid.width} x {grid.height}"
        )
        progress.update(1.0)
        self.reader = TileReader(raster, info, layout, reference)
        self.networks = threading.BoundedSemaphore(self.model.runs)
        self.buffers = InputBuffers(self.workers)  # as many batches are prepared or run at a time
        self.check = progress.check
        return [origins[start : start + batch_size] for start in range(0, len(origins), batch_size)]

    def weight(self, chunk):
        return len(chunk)

    def releases_cache(self, chunk):
        """A row of tiles is done: its input blocks are not needed again, nor the embeddings' blocks written."""
        return any(x + self.layout.core_width >= self.grid.width * self.stride for x, _ in chunk)

    def use_cluster(self, cluster, settings, progress):
        self.cluster = cluster
        with open(self.model_path, "rb") as handle:
            self.shipped = cluster.share((handle.read(), self.info.sha256, os.path.basename(self.model_path),
                                          self.device, self.threads))
        self.source = settings.source(grey_as_rgb=True)
        self.assign = partial(self.assign, mapper=cluster.mapper)
        if self.info.global_context:
            progress.warn("This model's overlapping tiles are blended in this process; the cluster assigns the "
                          "segments.")

    def describe(self, chunks):
        if self.info.global_context:
            return blended_tiles.describe_blended(self.model, self.reader, self.layout, chunks, self.grid,
                                                  self.check, self.workers)
        if self.cluster is None:
            return self._described_here(chunks)
        return self.cluster.ordered_map(embed_task, chunks, self.source, self.shipped, self.reader.ranges,
                                        self.layout, self.grid)

    def _described_here(self, chunks):
        """``describe`` in this process; the reused network input arrays are let go of at its end (kept through
        the label pass, they made it fault in 13,000 more pages of 25 MPix: 22,000 instead of 9,000)."""
        yield from super().describe(chunks)
        self.buffers = None

    def read(self, chunk):
        tiles = [self.reader.read(x, y) for x, y in chunk]
        if self.releases_cache(chunk):
            self.raster.release_cache()
        return chunk, tiles

    def compute(self, chunk, tiles):
        return embed_tiles(self.model, self.reader, self.layout, chunk, tiles, self.grid, self.check, self.networks,
                           self.sample, self.buffers)

    def fit(self, sample, segments, seed, check, start=None):
        return fit_centres(sample, segments, seed, check, start)

    def vectors(self, sample):
        return sample[:, :-1]

    def feature_meta(self, raster):
        return FeatureMeta(KIND, [f"embedding_{i}" for i in range(1, self.channels + 1)], self.stride,
                           dict(model=self.info.summary(), halo=self.halo), raster.bands, self.reader.ranges)

    def label_metadata(self):
        return dict(provider=self.model.provider, upsample=self.upsample)

    def label_windows(self, raster, settings, segments, progress):
        # per pixel: features read, distances (cells, then two interpolation buffers), ids, masks; windows are
        # computed on WORKERS threads, WORKERS + 1 in flight
        assign_bytes = (16 + (self.channels + 3 * segments) * 4 / self.stride**2) * (WORKERS + 1)
        windows = plan_windows(raster.width, raster.height, int(settings.memory_bytes / assign_bytes),
                               step=self.stride, row_step=raster.block_height)
        progress.log(f"Labels written in {len(windows)} windows (MEMORY_MB {settings.memory_mb:g})")
        return windows


def embed_tiles(model, reader, layout, chunk, tiles, grid, cancel_check=None, networks=None, sample=None,
                buffers=None):
    """Scale a chunk's tiles (read by ``reader.read``), run the network and cut out the cores: the ``Cells`` of
    every tile's core (embeddings with NaN on invalid cells; sample rows [embedding..., brightness]). ``grid``: the
    whole raster's cell grid; ``networks``: a semaphore bounding the networks run at once; ``sample``: the run's
    ``BlockSample``, whose bound leaves out cells it will not take (``segmentation.embedding_cells``);
    ``buffers``: an ``InputBuffers`` to take the network's input array from."""
    stride = reader.stride
    cells_h, cells_w, first = layout.core_height // stride, layout.core_width // stride, layout.halo // stride
    buffers = buffers or InputBuffers(0)
    batch = buffers.take((len(chunk), 3, layout.height, layout.width))
    prepared = [reader.prepare(x, y, *tile, out=batch[i]) for i, ((x, y), tile) in enumerate(zip(chunk, tiles))]
    del tiles
    with networks or nullcontext():
        output = model.run(batch, cancel_check=cancel_check)
    buffers.give(batch)
    del batch
    cores = []
    for (x, y), (_, cell_valid, brightness), embedding in zip(chunk, prepared, output):
        col, row = x // stride, y // stride
        core_cells = Window(col, row, min(cells_w, grid.width - col), min(cells_h, grid.height - row))
        rows, cols = core_cells.height, core_cells.width
        core = embedding[:, first : first + rows, first : first + cols]
        cores.append(embedding_cells(core_cells, core, cell_valid[:rows, :cols], brightness[:rows, :cols],
                                     grid.width, sample))
    return cores


class InputBuffers:
    """Network input arrays handed from batch to batch, at most ``kept`` of them kept between batches: a fresh 9 MB
    array for every tile faulted its pages in again (with the edge tiles scaled in place, preparing 25 MPix
    faults 3,900 pages instead of 9,900: bench/profile_cnn_embeddings.py)."""

    def __init__(self, kept):
        self.kept = kept
        self._free = []
        self._lock = threading.Lock()

    def take(self, shape):
        with self._lock:
            for position, array in enumerate(self._free):
                if array.shape == shape:
                    return self._free.pop(position)
        return np.empty(shape, np.float32)

    def give(self, array):
        with self._lock:
            if len(self._free) < self.kept:
                self._free.append(array)


def embed_task(chunk, source, shipped, ranges, layout, grid):
    """Worker task of the inference pass: ``embed_tiles`` of a chunk, the input opened by the worker and the model
    (``shipped`` = bytes, sha256, name, DEVICE, THREADS) loaded from its worker-local copy."""
    data, sha256, name, device, threads = shipped
    model = load_model(distributed.model_file(data, sha256, name), device, threads)
    raster = source.open()
    reader = TileReader(raster, model.info, layout, {"features": {"input_ranges": ranges}} if ranges else None)
    return embed_tiles(model, reader, layout, chunk, [reader.read(x, y) for x, y in chunk], grid)


@within_budget
def segment_cnn(
    input_path: str,
    output_path: str,
    model_path: str,
    segments: int = 8,
    device: str = "auto",
    tile_size: int = 0,
    batch_size: int = 4,
    threads: int = 0,
    seed: int = 0,
    bands: Sequence[int] | None = None,
    features_path: str | None = None,
    memory_mb: float = 256,
    reference_path: str | None = None,
    sample_size: int = 50_000,
    upsample: str = "bilinear",
    region: Region | None = None,
    progress: Progress | None = None,
    scheduler: Any = None,
    k_min: int = K_MIN,
    k_max: int = K_MAX,
) -> CnnResult:
    """Segment ``input_path`` into ``segments`` kinds of region with the embeddings of an ONNX model
    (``segmenter:cnn``).

    Parameters
    ----------
    input_path, output_path : str
        INPUT and OUTPUT (the label raster, ids 1..K, 0 = nodata).
    model_path : str
        MODEL / MODEL_PATH: an ONNX model that follows engine/backends/model_contract.py.
    segments : int
        SEGMENTS: K; 0 chooses K in ``k_min``..``k_max``.
    device : {"auto", "cpu", "cuda", "coreml"}
        DEVICE: ONNX Runtime's execution provider (the CPU when the asked one is missing, said in the log).
    tile_size, batch_size, threads : int
        TILE_SIZE (0: about 1024 px within MEMORY_MB), BATCH_SIZE, THREADS (0: one network per core).
    seed, sample_size : int
        SEED of the sample and of k-means++; how many cells the centres are fitted on.
    bands : sequence of int, optional
        BANDS (1-based; one band is used as grey for the three colours).
    features_path, reference_path : str, optional
        FEATURES (the embeddings, for knn_refine) and REFERENCE (a label raster whose centres are reused).
    memory_mb : float
        MEMORY_MB: tiles, batches and features in memory fit in it; the result does not depend on it.
    upsample : {"bilinear", "nearest"}
        How cell labels become pixel labels: distances to the centres interpolated between cell centres
        (measured better on the Dubai tiles), or each cell's id on its pixels.
    region : Region, optional
        EXTENT / PIXEL_SIZE / MASK: only these pixels.
    progress : Progress, optional
        Progress, cancel and log.
    scheduler : str or distributed.Client, optional
        A Dask scheduler to run the tiles and the label windows on (the model is sent to the workers once); None
        or empty: this process. The same bytes either way.
    k_min, k_max : int
        K_MIN, K_MAX: the range automatic K is chosen in.

    Returns
    -------
    CnnResult
        The outputs, centres, tiles and batches, the provider used, the model's summary, the segments present and
        the criterion (automatic K).
    """
    settings = Settings.checked(input_path, output_path, segments, seed, bands, features_path, memory_mb,
                                reference_path, sample_size, region, scheduler, k_min, k_max)
    extractor = CnnEmbeddings(model_path, device, tile_size, batch_size, threads, upsample)
    run = segment(extractor, settings, progress or Progress())
    layout, model = extractor.layout, extractor.model
    return CnnResult(run.output, run.features, run.centres, run.valid_cells, len(layout.origins), extractor.batches,
                     (layout.height, layout.width), model.provider, model.info.summary(), run.present, model.threads,
                     run.label_windows, run.criterion)


def fit_centres(sample, segments, seed, check=None, start=None):
    """K-Means on the sampled embeddings; ids ordered by the mean brightness of their sampled cells (dark first).

    ``sample`` rows are [embedding..., brightness]. Ties (and empty clusters) keep the fit's order.
    """
    embeddings, brightness = sample[:, :-1], sample[:, -1].astype(np.float64)
    centres = kmeans.fit(embeddings, segments, seed=seed, check=check, start=start)
    members = kmeans.assign(embeddings, centres)
    counts = np.bincount(members, minlength=segments)
    mean = np.bincount(members, brightness, minlength=segments) / np.maximum(counts, 1)
    mean[counts == 0] = np.inf
    return centres[np.lexsort((np.arange(segments), mean))]


