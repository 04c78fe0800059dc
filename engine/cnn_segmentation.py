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
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np
from osgeo import gdal

from . import blended_tiles, checks, distributed, kmeans, model_contract
from .errors import InputError
from .label_pass import centres_for, tag_features, write_label_raster, write_labels
from .labels import MAX_SEGMENTS, read_reference
from .memory import within_budget
from .onnx_runtime import DEVICES, import_onnxruntime, load_model, normaliser
from .outputs import Destination, prepare_outputs, scratch_folder
from .pipeline import WORKERS, ordered_map
from .progress import Progress
from .raster_io import AtomicRaster, byte_stretch, open_input, scaled_geotransform, value_ranges
from .sampling import BlockSample
from .upsampling import write_labels_bilinear
from .windows import plan_windows

KIND = "cnn"
FEATURE_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"]
TILE_BYTES_PER_PIXEL = 160  # input copies + network activations per tile pixel (measured peak ~ 130 B/px)
UPSAMPLING = ("bilinear", "nearest")
MEMORY_SHARE = 0.25  # embeddings no FEATURES file asks for stay in memory when they take at most this of MEMORY_MB


class MemoryFeatures:
    """The embeddings in a GDAL MEM dataset, for a run that writes no FEATURES file and whose embeddings fit in
    MEMORY_SHARE of MEMORY_MB (25 MPix at stride 4, 6 bands: 37.5 MB): the label pass reads them back without a
    scratch GeoTIFF's write, flush and read. The AtomicRaster methods the run uses, on that dataset."""

    def __init__(self, width, height, bands):
        self.dataset = gdal.GetDriverByName("MEM").Create("", width, height, bands, gdal.GDT_Float32)

    def band(self, index=1):
        return self.dataset.GetRasterBand(index)

    def checked(self, operation, *arguments):
        return operation(*arguments)

    def release_cache(self):
        pass

    def abort(self):
        self.dataset = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.abort()
        return False


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
    padded_w, padded_h = -(-width // stride) * stride, -(-height // stride) * stride

    def balanced(size):
        count = -(-size // core)  # tiles along this side
        return -(-size // count // stride) * stride  # the smallest stride multiple that covers size in count

    core_w, core_h = balanced(padded_w), balanced(padded_h)
    origins = tuple((x, y) for y in range(0, padded_h, core_h) for x in range(0, padded_w, core_w))
    return TileLayout(halo, core_w, core_h, origins)


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
        if mirror is not None:  # rows, then columns (one 2-D fancy index is 3x slower)
            rows, cols = mirror
            pixels = np.take(np.take(pixels, rows, axis=1), cols, axis=2)
            valid = None if valid is None else np.take(np.take(valid, rows, axis=0), cols, axis=1)
        network = np.empty(pixels.shape, np.float32) if out is None else out
        core = (slice(halo, halo + layout.core_height), slice(halo, halo + layout.core_width))
        if self._stretch is None:  # 8-bit: the values as float32 are exact, scaled straight from the bytes
            grey = np.add(pixels[0][core], pixels[1][core], dtype=np.float32)
            grey += pixels[2][core]
            np.multiply(pixels, self.scale, out=network)
        else:
            np.copyto(network, pixels, casting="unsafe")
            self._stretch(network)
            grey = network[0][core] + network[1][core]
            grey += network[2][core]
            network *= self.scale
        network += self.offset
        if valid is not None:
            network[:, ~valid] = 0.0  # the model's mean colour
        # Core cells: valid when at least one of their own pixels inside the raster is valid.
        rows, cols = layout.core_height // stride, layout.core_width // stride
        inside_h, inside_w = raster.height - y, raster.width - x
        if valid is None and inside_h >= layout.core_height and inside_w >= layout.core_width:
            counts = np.full((rows, cols), stride * stride, np.float32)
        else:
            inside = np.zeros((layout.core_height, layout.core_width), bool)
            inside[:inside_h, :inside_w] = True
            if valid is not None:
                inside &= valid[core]
            grey *= inside
            counts = _cell_sums(inside.astype(np.float32), stride)
        brightness = _cell_sums(grey, stride) / (3.0 * np.maximum(counts, 1.0))
        return network, counts > 0, brightness


def _cell_sums(plane, stride):
    """Sums over stride x stride cells of a (rows * stride, cols * stride) float32 plane."""
    height, width = plane.shape
    return plane.reshape(height // stride, stride, width).sum(axis=1).reshape(
        height // stride, width // stride, stride).sum(axis=2)


def _validate(segments, batch_size, tile_size, device, sample_size, upsample):
    if not 2 <= segments <= MAX_SEGMENTS:
        raise InputError(f"SEGMENTS must be between 2 and {MAX_SEGMENTS}; got {segments}.")
    if batch_size < 1:
        raise InputError(f"BATCH_SIZE must be at least 1 tile; got {batch_size}.")
    if tile_size < 0:
        raise InputError(f"TILE_SIZE must be 0 (the model's recommended size) or a size in px; got {tile_size}.")
    if device not in DEVICES:
        raise InputError(f"DEVICE must be one of {', '.join(DEVICES)}; got {device!r}.")
    if sample_size < segments:
        raise InputError(f"The sample size ({sample_size}) must be at least SEGMENTS ({segments}).")
    if upsample not in UPSAMPLING:
        raise InputError(f"upsample must be one of {', '.join(UPSAMPLING)}; got {upsample!r}.")


@within_budget
def segment_cnn(
    input_path,
    output_path,
    model_path,
    segments=8,
    device="auto",
    tile_size=0,
    batch_size=4,
    threads=0,
    seed=0,
    bands=None,
    features_path=None,
    memory_mb=256,
    reference_path=None,
    sample_size=50_000,
    upsample="bilinear",
    region=None,
    progress=None,
    scheduler=None,
):
    """Segment ``input_path`` into ``segments`` kinds of region with the embeddings of an ONNX model.

    ``scheduler``: a Dask scheduler's address or a ``distributed.Client`` to run the tiles and the label windows on
    (``engine/distributed.py``); None or empty: this process. The model is sent to the workers once.

    ``upsample``: how cell labels become pixel labels: "bilinear" (distances to the centres interpolated
    between cell centres; measured better on the Dubai tiles) or "nearest" (each cell's id on its pixels).
    """
    progress = progress or Progress()
    input_path, output_path = checks.path("INPUT", input_path), checks.path("OUTPUT", output_path)
    model_path = checks.path("MODEL", model_path, optional=True)  # load_model says when there is none
    features_path = checks.path("FEATURES", features_path, optional=True)
    reference_path = checks.path("REFERENCE", reference_path, optional=True)
    segments, seed = checks.whole("SEGMENTS", segments), checks.whole("SEED", seed, 0)
    tile_size, batch_size = checks.whole("TILE_SIZE", tile_size), checks.whole("BATCH_SIZE", batch_size)
    threads, sample_size = checks.whole("THREADS", threads), checks.whole("sample_size", sample_size)
    bands, memory_mb = checks.bands(bands), checks.memory(memory_mb)
    _validate(segments, batch_size, tile_size, device, sample_size, upsample)
    import_onnxruntime(device)  # first: without it nothing else matters, and the message says how to install it
    raster = open_input(input_path, bands, grey_as_rgb=True, region=region)
    if len(raster.bands) != 3:
        raise InputError(
            f"The model takes 3 bands (red, green, blue); BANDS gives {len(raster.bands)}. Choose 3 bands, or "
            f"one band of a grey-scale raster (it is used three times)."
        )
    outputs = prepare_outputs(
        {"INPUT": input_path, "REFERENCE": reference_path, "MASK": region.mask_path if region else None},
        [Destination("OUTPUT", output_path, "labels"), Destination("FEATURES", features_path, optional=True)],
        progress, other_inputs={"MODEL": model_path})
    reference = read_reference(reference_path) if reference_path else None

    progress.plan([("Loading the model", 1), ("Computing embeddings", 75), ("Fitting centres", 10),
                   ("Assigning segments", 14)])  # shares of the time measured on 25 MPix (bench/bench_cnn.py)
    progress.start("Loading the model")
    model = load_model(model_path, device, threads, log=progress.log, warn=progress.warn)
    info = model.info
    if reference is not None:
        _check_reference(reference, reference_path, info)
        segments = int(reference["k"])
    stride, halo = info.stride, info.halo
    tile_size = tile_size or info.tile_size
    layout = plan_tiles(raster.width, raster.height, stride, halo, tile_size)
    embed = _embed
    if info.global_context:  # no finite receptive field: overlapping tiles, blended (engine/blended_tiles.py)
        blended_tiles.check_layout(layout, tile_size)
        progress.warn(blended_tiles.notes(info, layout))
        embed = blended_tiles.embed_blended
    if model_contract.has_random_weights(info.metadata):
        progress.warn(f"{info.name} has RANDOM weights (exported for tests and benchmarks): its segments mean "
                      f"nothing.")
    tile_pixels = layout.width * layout.height
    fitting = max(1, int(memory_mb * 2**20 // (TILE_BYTES_PER_PIXEL * tile_pixels)))
    if fitting < batch_size:
        progress.log(f"BATCH_SIZE {batch_size} lowered to {fitting} to stay within MEMORY_MB {memory_mb:g}")
        batch_size = fitting
    grid_w, grid_h = -(-raster.width // stride), -(-raster.height // stride)
    batches = -(-len(layout.origins) // batch_size)
    progress.log(
        f"{raster.width} x {raster.height} px; model {info.name}: stride {stride}, {info.embed_dim}-d embeddings, "
        f"receptive field {info.receptive_field} px -> halo {halo} px; {len(layout.origins)} tiles of "
        f"{layout.width} x {layout.height} px ({layout.core_width} x {layout.core_height} px cores) in {batches} "
        f"batches of up to {batch_size}; feature grid {grid_w} x {grid_h}"
    )
    progress.update(1.0)
    reader = TileReader(raster, info, layout, reference)

    cluster = distributed.connect(scheduler, progress, memory_mb)
    on_cluster = None
    if cluster is not None:
        with open(model_path, "rb") as handle:
            shipped = cluster.share((handle.read(), info.sha256, os.path.basename(model_path), device, threads))
        on_cluster = (cluster, distributed.RasterSource(input_path, tuple(bands) if bands else None, region, True),
                      shipped, reader.ranges)
    scratch = None
    in_memory = not features_path and grid_w * grid_h * info.embed_dim * 4 <= memory_mb * 2**20 * MEMORY_SHARE
    if not features_path and not in_memory:
        scratch = scratch_folder()
    feature_target = None if in_memory else features_path or os.path.join(scratch, "features.tif")
    try:
        with outputs, (MemoryFeatures(grid_w, grid_h, info.embed_dim) if in_memory else AtomicRaster(
            feature_target, grid_w, grid_h, info.embed_dim, gdal.GDT_Float32,
            scaled_geotransform(raster.geotransform, stride), raster.projection, FEATURE_OPTIONS,
            gcps_from=raster.dataset, gcp_scale=stride, group=outputs if features_path else None,
            name=None if features_path else "the scratch feature raster",
        )) as features:
            for band in range(1, info.embed_dim + 1):
                # NaN nodata before any write: GDAL skips blocks that are all 0 while no nodata is set and fills
                # them with the nodata value at closing, so an embedding channel that is 0 everywhere (a ReLU
                # output) came back as NaN
                features.band(band).SetNoDataValue(float("nan"))
            progress.start("Computing embeddings")
            if embed is _embed:
                embed = partial(_embed, on_cluster=on_cluster)
            elif on_cluster is not None:
                progress.warn("This model's overlapping tiles are blended in this process; the cluster assigns "
                              "the segments.")
            sample, valid_cells = embed(model, reader, layout, batch_size, features, grid_w, sample_size, seed,
                                        progress)
            centres = centres_for(
                sample, valid_cells, segments, reference,
                lambda points: fit_centres(points, segments, seed, progress.check),
                progress, input_path, raster.bands, f"cells ({stride} x {stride} px each)",
                "Choose fewer SEGMENTS or a larger raster.")
            feature_meta = dict(
                kind=KIND, names=[f"embedding_{i}" for i in range(1, info.embed_dim + 1)], stride=stride,
                model=info.summary(), halo=halo, bands=raster.bands, input_ranges=reader.ranges,
            )
            tag_features(features, feature_meta)

            # per pixel: features read, distances (cells, then two interpolation buffers), ids, masks; windows
            # are computed on WORKERS threads, WORKERS + 1 in flight
            assign_bytes = (16 + (info.embed_dim + 3 * segments) * 4 / stride**2) * (WORKERS + 1)
            windows = plan_windows(raster.width, raster.height, int(memory_mb * 2**20 / assign_bytes), step=stride,
                                   row_step=raster.block_height)
            progress.log(f"Labels written in {len(windows)} windows (MEMORY_MB {memory_mb:g})")
            present = write_label_raster(raster, windows, stride, features.dataset, centres, output_path, dict(
                method=KIND, seed=seed, centres=centres.tolist(), features=feature_meta,
                provider=model.provider, upsample=upsample,
                reference=os.path.basename(reference_path) if reference_path else None,
            ), progress, assign=partial(write_labels_bilinear if upsample == "bilinear" else write_labels,
                                        mapper=cluster.mapper if cluster else ordered_map), group=outputs)
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
    return CnnResult(output_path, features_path, centres, valid_cells, len(layout.origins), batches,
                     (layout.height, layout.width), model.provider, info.summary(), present, model.threads,
                     len(windows))


def fit_centres(sample, segments, seed, check=None):
    """K-Means on the sampled embeddings; ids ordered by the mean brightness of their sampled cells (dark first).

    ``sample`` rows are [embedding..., brightness]. Ties (and empty clusters) keep the fit's order.
    """
    embeddings, brightness = sample[:, :-1], sample[:, -1].astype(np.float64)
    centres = kmeans.fit(embeddings, segments, seed=seed, check=check)
    members = kmeans.assign(embeddings, centres)
    counts = np.bincount(members, minlength=segments)
    mean = np.bincount(members, brightness, minlength=segments) / np.maximum(counts, 1)
    mean[counts == 0] = np.inf
    return centres[np.lexsort((np.arange(segments), mean))]


def _check_reference(reference, path, info):
    centres = reference["centres"]
    features = reference.get("features") or {}
    used = features.get("model") or {}
    if features.get("kind") != KIND or centres.ndim != 2:
        raise InputError(
            f"The reference '{path}' was made by {reference.get('method', 'another method')}, not segmenter:cnn. "
            f"Choose a label raster made by segmenter:cnn with the same model."
        )
    if used.get("sha256") != info.sha256 or centres.shape[1] != info.embed_dim:
        raise InputError(
            f"The reference '{path}' was made with model {used.get('name')} (version {used.get('version')}, "
            f"sha256 {str(used.get('sha256'))[:12]}); this run uses {info.name} (version "
            f"{info.metadata.get('version')}, sha256 {info.sha256[:12]}). Use the same MODEL as the reference."
        )


def _embed_tiles(model, reader, layout, chunk, tiles, grid_w, grid_h, cancel_check=None, networks=None):
    """Scale a chunk's tiles (read by ``reader.read``), run the network and cut out the cores: per tile (col, row,
    core embeddings with NaN on invalid cells, linear indices and [embedding, brightness] rows of valid cells)."""
    stride = reader.stride
    cells_h, cells_w, first = layout.core_height // stride, layout.core_width // stride, layout.halo // stride
    batch = np.empty((len(chunk), 3, layout.height, layout.width), np.float32)
    prepared = [reader.prepare(x, y, *tile, out=batch[i]) for i, ((x, y), tile) in enumerate(zip(chunk, tiles))]
    del tiles
    with networks or nullcontext():
        output = model.run(batch, cancel_check=cancel_check)
    del batch
    cores = []
    for (x, y), (_, cell_valid, brightness), embedding in zip(chunk, prepared, output):
        col, row = x // stride, y // stride
        rows, cols = min(cells_h, grid_h - row), min(cells_w, grid_w - col)
        core = embedding[:, first : first + rows, first : first + cols]
        cell_valid, brightness = cell_valid[:rows, :cols], brightness[:rows, :cols]
        core = np.where(cell_valid, core, np.float32(np.nan)).astype(np.float32)
        r, c = np.nonzero(cell_valid)
        cores.append((col, row, core, (r + row).astype(np.int64) * grid_w + c + col,
                      np.concatenate([core[:, r, c].T, brightness[r, c, None].astype(np.float32)], axis=1)))
    return cores


def embed_task(chunk, source, shipped, ranges, layout, grid_w, grid_h):
    """Worker task of the inference pass: ``_embed_tiles`` of a chunk, the input opened by the worker and the model
    (``shipped`` = bytes, sha256, name, DEVICE, THREADS) loaded from its worker-local copy."""
    data, sha256, name, device, threads = shipped
    model = load_model(distributed.model_file(data, sha256, name), device, threads)
    raster = source.open()
    reader = TileReader(raster, model.info, layout, {"features": {"input_ranges": ranges}} if ranges else None)
    return _embed_tiles(model, reader, layout, chunk, [reader.read(x, y) for x, y in chunk], grid_w, grid_h)


def _embed(model, reader, layout, batch_size, features, grid_w, sample_size, seed, progress, on_cluster=None):
    """The one inference pass: write every core's embeddings and keep a seeded sample of valid cells.

    This thread reads the tiles (GDAL; a dataset is not thread-safe) and writes the embeddings; worker threads
    scale the pixels, run the network and cut out the cores, ``model.runs`` networks at a time, each on one
    core (on a CPU, runs of one thread each use the cores better than one run over several threads, and no
    core waits for the reads or the writes). One worker per run, at least two, so that with one run the next
    batch is prepared while the network runs. Results are taken in tile order, so the output is the same
    whatever the thread count. On a cluster (``on_cluster``) the workers read their tiles themselves.
    """
    stride = reader.stride
    sample = BlockSample(sample_size, seed)
    valid_cells = 0
    origins = layout.origins
    grid_h = features.dataset.RasterYSize
    padded_width = grid_w * stride
    chunks = [origins[start : start + batch_size] for start in range(0, len(origins), batch_size)]
    networks = threading.BoundedSemaphore(model.runs)

    def row_ends(chunk):
        return any(x + layout.core_width >= padded_width for x, _ in chunk)

    def read(chunk):
        tiles = [reader.read(x, y) for x, y in chunk]
        if row_ends(chunk):
            reader.raster.release_cache()  # a row of tiles is done: its input blocks are not needed again
        return chunk, tiles

    def compute(chunk, tiles):
        return _embed_tiles(model, reader, layout, chunk, tiles, grid_w, grid_h, progress.check, networks)

    if on_cluster is None:
        results = ordered_map(read, compute, chunks, workers=max(model.runs, 2))
    else:
        cluster, source, shipped, ranges = on_cluster
        results = cluster.ordered_map(embed_task, chunks, source, shipped, ranges, layout, grid_w, grid_h)
    done = 0
    for chunk, cores in results:
        for col, row, core, _, _ in cores:
            bands, rows, cols = core.shape
            features.checked(features.dataset.WriteRaster, col, row, cols, rows, core.tobytes(), cols, rows,
                             gdal.GDT_Float32, list(range(1, bands + 1)))
        linear = np.concatenate([tile[3] for tile in cores])
        sample.offer(linear, np.concatenate([tile[4] for tile in cores]))
        valid_cells += len(linear)
        if row_ends(chunk):
            features.release_cache()
        done += len(chunk)
        progress.update(done / len(origins), f"Computing embeddings ({done}/{len(origins)} tiles)")
    return sample.vectors, valid_cells
