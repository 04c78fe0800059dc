"""The one segmentation pipeline; the methods differ only in their ``FeatureExtractor``.

    open -> check -> reference -> scratch -> features -> sample -> fit -> assign -> commit

``segment(extractor, settings, progress)`` opens the input, checks the run's arguments and destinations, reads
the REFERENCE, makes the feature raster (FEATURES, a raw scratch file or memory), runs the extractor over the raster
once (``pipeline.ordered_map``: GDAL reads in this thread, numpy on workers, results in order) writing its cells and
keeping a seeded sample spread over the whole raster, fits the centres on that sample (or takes the reference's),
writes the labels on the input's grid and commits every output together.

Given a Dask ``scheduler`` (``Settings.scheduler``, engine/backends/distributed.py), the extractor decides which of its
pieces run on the cluster: its ``describe`` and ``assign`` then submit module-level, picklable task functions that
open the input themselves (``RasterSource``), and this process stays the single writer of every output, in
order, so the bytes are those of a local run.

A method is one ``FeatureExtractor`` (engine/segmentation/kmeans_segmentation.py: block descriptors;
engine/segmentation/cnn_segmentation.py: CNN embeddings): its grid (stride, channels, halo), how it describes a piece of
the raster, what a REFERENCE must match, how centres are fitted and how cells become pixel labels. A third method is one
new file.
"""

import os
import shutil
from dataclasses import dataclass

import numpy as np

from ..backends import distributed
from ..rasters.feature_raster import FeatureRaster
from ..rasters.labels import MAX_SEGMENTS, read_reference
from ..rasters.metadata import LabelMeta
from ..rasters.raster_io import open_input
from ..rasters.windows import Window
from ..runtime import checks
from ..runtime.errors import InputError
from ..runtime.outputs import Destination, prepare_outputs, scratch_folder
from ..runtime.pipeline import WORKERS, ordered_map
from . import hierarchy
from .label_pass import write_label_raster, write_labels
from .sampling import BlockSample, candidates


@dataclass(frozen=True)
class Settings:
    """What every segmentation run is given, checked (``Settings.checked``)."""

    input_path: str
    output_path: str
    segments: int = 8  # 0: automatic, chosen in k_min..k_max (engine/segmentation/hierarchy.py)
    seed: int = 0
    bands: list = None
    features_path: str = None
    memory_mb: float = 256
    reference_path: str = None
    sample_size: int = 50_000
    region: object = None  # region.Region: EXTENT and MASK
    scheduler: object = None  # a Dask scheduler's address or a distributed.Client; None or empty: this process
    k_min: int = hierarchy.K_MIN
    k_max: int = hierarchy.K_MAX

    @classmethod
    def checked(cls, input_path, output_path, segments=8, seed=0, bands=None, features_path=None, memory_mb=256,
                reference_path=None, sample_size=50_000, region=None, scheduler=None, k_min=hierarchy.K_MIN,
                k_max=hierarchy.K_MAX):
        """The settings with every argument checked (types, ranges) and normalised, or an ``InputError`` naming
        the parameter."""
        settings = cls(
            checks.path("INPUT", input_path), checks.path("OUTPUT", output_path), checks.whole("SEGMENTS", segments),
            checks.whole("SEED", seed, 0), checks.bands(bands), checks.path("FEATURES", features_path, optional=True),
            checks.memory(memory_mb), checks.path("REFERENCE", reference_path, optional=True),
            checks.whole("sample_size", sample_size, 1), region, scheduler,
            checks.whole("K_MIN", k_min, 2, MAX_SEGMENTS), checks.whole("K_MAX", k_max, 2, MAX_SEGMENTS))
        if not (settings.segments == 0 or 2 <= settings.segments <= MAX_SEGMENTS):
            raise InputError(f"SEGMENTS must be 0 (automatic) or between 2 and {MAX_SEGMENTS}; got "
                             f"{settings.segments}.")
        if settings.k_min > settings.k_max:
            raise InputError(f"K_MIN ({settings.k_min}) must not be greater than K_MAX ({settings.k_max}).")
        if settings.sample_size < settings.most_segments:
            raise InputError(f"The sample size ({settings.sample_size}) must be at least "
                             f"{'K_MAX' if settings.automatic else 'SEGMENTS'} ({settings.most_segments}).")
        return settings

    @property
    def automatic(self):
        return self.segments == 0

    @property
    def most_segments(self):
        return self.k_max if self.automatic else self.segments

    @property
    def memory_bytes(self):
        return self.memory_mb * 2**20

    def source(self, grey_as_rgb=False):
        """How a Dask worker opens the input as this run opened it (``distributed.RasterSource``)."""
        return distributed.RasterSource(self.input_path, tuple(self.bands) if self.bands else None, self.region,
                                        grey_as_rgb)


@dataclass
class Cells:
    """What describing one piece of the raster gives: ``values`` (C, rows, cols) float32 (NaN = no valid pixel)
    of the cells of ``window`` (on the cell grid), and the valid cells' ``linear`` indices (row * grid width +
    col) and sample ``vectors`` (n, channels of the sample). ``values`` None: nothing to write (a cluster that
    recomputes the features for the labels); ``valid``: how many valid cells when ``linear`` holds only the sample
    candidates (None: all of them); ``keys``: the ``linear`` indices' sampling keys, when computed already."""

    window: object
    values: np.ndarray
    linear: np.ndarray
    vectors: np.ndarray
    valid: int = None
    masked: int = 0  # cells with valid pixels left out because the method gave non-finite values for them
    keys: np.ndarray = None

    @property
    def count(self):
        return len(self.linear) if self.valid is None else self.valid


def embedding_cells(window, core, valid, brightness, grid_width, sample=None):
    """The ``Cells`` of a network's ``core`` (C, rows, cols) over ``window``: cells whose pixels are ``valid`` but
    whose embedding is not finite (NaN, infinity: the network's doing) are left out as nodata and counted in
    ``masked``; sample rows [embedding..., brightness].

    ``sample`` (the run's ``BlockSample``, read from this thread): the cells' keys are hashed here and only the
    cells it may still take get sample rows (``sampling.candidates``); else every valid cell does."""
    channels, rows, cols = core.shape
    if valid.all() and np.isfinite(core).all():  # every cell (most tiles): no masking
        values, masked = np.ascontiguousarray(core, np.float32), 0
        linear = ((np.arange(rows, dtype=np.int64)[:, None] + window.yoff) * grid_width
                  + (np.arange(cols, dtype=np.int64) + window.xoff)).ravel()
        positions = None
    else:
        finite = np.isfinite(core).all(axis=0)
        masked = int(np.count_nonzero(valid & ~finite))
        valid = valid & finite
        values = np.where(valid, core, np.float32(np.nan)).astype(np.float32)
        positions = np.flatnonzero(valid)
        linear = linear_indices(*np.divmod(positions, cols), window, grid_width)
    count, keys = len(linear), None
    if sample is not None:
        chosen, keys = candidates(linear, sample.seed, sample.bound)
        linear = linear[chosen]
        positions = chosen if positions is None else positions[chosen]
    if positions is None:  # every cell, in order
        vectors = np.empty((rows, cols, channels + 1), np.float32)
        vectors[:, :, :channels] = core.transpose(1, 2, 0)
        vectors[:, :, channels] = brightness
        vectors = vectors.reshape(rows * cols, channels + 1)
    else:
        r, c = np.divmod(positions, cols)
        vectors = np.empty((len(positions), channels + 1), np.float32)
        vectors[:, :channels] = core[:, r, c].T
        vectors[:, channels] = brightness[r, c]
    return Cells(window, values, linear, vectors, count, masked, keys)


class FeatureExtractor:
    """One segmentation method: how it describes the raster on its cell grid. Subclasses set the class attributes
    and implement the methods that raise NotImplementedError.

    The pipeline calls, in this order: ``check_raster``, ``start`` (first progress stage), ``reference_mismatch``,
    ``plan`` (returns the pieces to describe), ``use_cluster`` (with a Dask scheduler), ``describe`` (by default
    ``read``/``compute`` per piece through ``ordered_map``), ``fit``, ``feature_meta``, ``label_windows``, then
    writes labels with ``assign``."""

    method = ""  # the METHOD metadata item and the name in messages (kmeans, cnn)
    stage = ""  # the progress stage of the describing pass
    stages = ()  # (name, share) of the run's progress stages
    unit = ""  # what the describing pass counts in its progress messages (windows, tiles)
    cell_units = ""  # what a cell is called in messages ("blocks", "cells (4 x 4 px each)")
    advice = ""  # what to change when there are fewer valid cells than SEGMENTS
    feature_options = None  # GeoTIFF creation options of the feature raster
    memory_share = 0.0  # features no FEATURES file asks for stay in memory when they take at most this of MEMORY_MB
    grey_as_rgb = False  # a single band is used three times (networks take red, green, blue)
    direct_reads = False  # an uncompressed GeoTIFF input read without GDAL's block cache (raster_io.open_input)
    assign = staticmethod(write_labels)  # how cells become pixel labels (label_pass.write_labels or alike)
    workers = WORKERS  # threads of the describing pass
    cluster = None  # a distributed.Cluster when the run was given a scheduler
    sample = None  # the run's BlockSample while the raster is described (``compute`` may read its bound)

    stride = 1  # pixels per cell side
    channels = 0  # feature bands
    halo = 0  # pixels of context a cell's features see beyond its own

    def check_arguments(self):
        """Raise an ``InputError`` before any work when the run cannot be made (a missing package)."""

    def check_raster(self, raster):
        """Raise an ``InputError`` when the opened input cannot be segmented with these settings."""

    def other_inputs(self):
        """{parameter: path} of input files that are not rasters (a model), for the destination checks."""
        return {}

    def start(self, settings, progress):
        """The first progress stage (load a model, measure the raster)."""
        progress.start(self.stages[0][0])

    def non_finite(self, masked, valid, progress, source=None, advice=""):
        """Tell the user that ``masked`` cells with valid pixels got non-finite features and were left out
        (``valid`` cells are left): a warning, or an ``InputError`` (ending with ``advice``) when none is left.
        ``source``: what gave which values, by default "<method> gave non-finite features"."""
        source = source or f"{self.method} gave non-finite features"
        text = f"{source} (NaN or infinity) for {masked} of {masked + valid} cells with valid pixels"
        if not valid:
            raise InputError(f"{text}: no cell is left to segment.{advice}")
        progress.warn(f"{text}; they are left out as nodata (0 in OUTPUT).")

    def reference_mismatch(self, reference):
        """Why a REFERENCE (its ``LabelMeta``, ``centres`` as an array) cannot be used by this run (the rest of
        "The reference 'path' ..."), or None."""
        raise NotImplementedError

    def plan(self, raster, settings, reference, progress):
        """The pieces of the raster to describe (windows, batches of tiles), in the order their results are taken."""
        raise NotImplementedError

    def use_cluster(self, cluster, settings, progress):
        """Run the pieces that can run on ``cluster`` (a ``distributed.Cluster``) there: set ``cluster`` and, as
        needed, ``assign``; ``describe`` then submits this method's task functions."""
        self.cluster = cluster

    def describe(self, items):
        """``(item, [Cells])`` for every piece, in the order of ``items``: here, ``read`` in this thread and
        ``compute`` on ``workers`` threads."""
        return ordered_map(self.read, self.compute, items, self.workers)

    def read(self, item):
        """The GDAL part of describing ``item`` (this thread only); returns the arguments of ``compute``."""
        raise NotImplementedError

    def compute(self, *arguments):
        """The numpy part (any thread): a list of ``Cells``."""
        raise NotImplementedError

    def weight(self, item):
        """How many ``unit`` one piece counts for in progress messages."""
        return 1

    def releases_cache(self, item):
        """Whether the feature raster's cached blocks can be written out after ``item``."""
        return True

    def fit(self, sample, segments, seed, check, start=None):
        """Centres (K, channels) from the sampled vectors, ids ordered from dark to light; ``start``: centres to
        refine instead of k-means++ starts (``kmeans.fit``)."""
        raise NotImplementedError

    def vectors(self, sample):
        """The part of the sample rows the centres are fitted on (the CNN's rows end with the brightness)."""
        return sample

    def feature_meta(self, raster):
        """The ``FeatureMeta`` of this run's features."""
        raise NotImplementedError

    def label_metadata(self):
        """This method's own items of the label raster's metadata (after method, seed, centres, features)."""
        return {}

    def label_windows(self, raster, settings, segments, progress):
        """The windows of the label pass (offsets multiples of the stride), logged."""
        raise NotImplementedError


@dataclass
class Segmentation:
    """What a run made: the paths written, the centres, the valid cells described, the segments present in the
    output and the windows of the label pass."""

    output: str
    features: str
    centres: np.ndarray
    valid_cells: int
    present: int
    label_windows: int
    criterion: dict = None  # the automatic choice of K: name, range, values per K, K chosen (None: K was given)


def check_reference(reference, path, extractor, segments, progress):
    """K of the reference (``labels.read_reference`` checked its items), once the extractor finds that it matches
    this run; SEGMENTS, when it differs, is ignored with a warning saying so."""
    problem = extractor.reference_mismatch(LabelMeta.parse(reference))
    if problem:
        raise InputError(f"The reference '{path}' {problem}")
    k = reference["k"]
    if segments not in (k, 0):
        progress.warn(f"REFERENCE has K = {k} segments; SEGMENTS = {segments} is ignored, the run uses {k}.")
    return k


def segment(extractor, settings, progress):
    """Run the pipeline for ``extractor`` (a ``FeatureExtractor``) with ``settings`` (``Settings``)."""
    extractor.check_arguments()
    raster = open_input(settings.input_path, settings.bands, grey_as_rgb=extractor.grey_as_rgb,
                        region=settings.region, direct=extractor.direct_reads)
    extractor.check_raster(raster)
    outputs = prepare_outputs(
        {"INPUT": settings.input_path, "REFERENCE": settings.reference_path,
         "MASK": settings.region.mask_path if settings.region else None},
        [Destination("OUTPUT", settings.output_path, "labels"),
         Destination("FEATURES", settings.features_path, optional=True)],
        progress, other_inputs=extractor.other_inputs())
    reference = read_reference(settings.reference_path) if settings.reference_path else None
    progress.plan(list(extractor.stages))
    extractor.start(settings, progress)
    segments = settings.segments
    if reference is not None:
        segments = check_reference(reference, settings.reference_path, extractor, segments, progress)
    items = extractor.plan(raster, settings, reference, progress)
    cluster = distributed.connect(settings.scheduler, progress, settings.memory_mb)
    if cluster is not None:
        extractor.use_cluster(cluster, settings, progress)

    grid = Window.whole(raster.width, raster.height).on_grid(extractor.stride)
    feature_bytes = grid.width * grid.height * extractor.channels * 4
    in_memory = not settings.features_path and feature_bytes <= settings.memory_bytes * extractor.memory_share
    scratch = None if settings.features_path or in_memory else scratch_folder()
    try:
        with outputs, FeatureRaster.create(raster, extractor.stride, extractor.channels, extractor.feature_options,
                                           settings.features_path, outputs, scratch, in_memory) as features:
            progress.start(extractor.stage)
            sample, valid, masked = _describe(extractor, items, features, settings, progress)
            if masked:
                extractor.non_finite(masked, valid, progress)
            centres, criterion = _centres(extractor, sample, valid, segments, reference, settings, raster,
                                          progress)
            sizes = hierarchy.sizes_of(extractor.vectors(sample), centres)
            feature_meta = extractor.feature_meta(raster)
            features.tag(feature_meta)
            windows = extractor.label_windows(raster, settings, len(centres), progress)
            metadata = dict(method=extractor.method, seed=settings.seed, centres=centres.tolist(),
                            features=feature_meta.as_dict(), **extractor.label_metadata(),
                            reference=os.path.basename(settings.reference_path) if settings.reference_path else None,
                            sizes=sizes.tolist(), merges=hierarchy.merge_tree(centres, sizes),
                            **({"criterion": criterion} if criterion else {}))
            present = write_label_raster(raster, windows, extractor.stride, features.dataset, centres,
                                         settings.output_path, metadata, progress, assign=extractor.assign,
                                         group=outputs)
            features.finish(keep=bool(settings.features_path))
            outputs.commit()
    finally:
        raster.dataset = None
        if cluster is not None:
            cluster.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return Segmentation(settings.output_path, settings.features_path, centres, valid, present, len(windows),
                        criterion)


def _describe(extractor, items, features, settings, progress):
    """The one pass over the raster: every piece's cells written to ``features`` and offered to the sample."""
    sample = extractor.sample = BlockSample(settings.sample_size, settings.seed)
    valid, masked, done, total = 0, 0, 0, sum(extractor.weight(item) for item in items)
    for item, pieces in extractor.describe(items):
        for cells in pieces:
            if cells.values is not None:
                features.write(cells.window, cells.values)
        if pieces:  # one offer per piece of work (the same sample either way)
            keys = [cells.keys for cells in pieces]
            sample.offer(_joined([cells.linear for cells in pieces]), _joined([cells.vectors for cells in pieces]),
                         None if any(part is None for part in keys) else _joined(keys))
            valid += sum(cells.count for cells in pieces)
            masked += sum(cells.masked for cells in pieces)
        if extractor.releases_cache(item):
            features.release_cache()
        done += extractor.weight(item)
        pieces = cells = None  # let go of this window before the next one is read (pipeline.ordered_map)
        progress.update(done / total, f"{extractor.stage} ({done}/{total} {extractor.unit})")
    return sample.vectors, valid, masked


def _joined(arrays):
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _centres(extractor, sample, valid, segments, reference, settings, raster, progress):
    """(centres, criterion): the reference's centres, or the extractor's fit of the sample once it is usable; with
    SEGMENTS = 0 (and no reference) K is chosen first and ``criterion`` is the evidence (else None)."""
    automatic = segments == 0
    if automatic:
        segments = settings.k_min
    if valid == 0:
        raise InputError(
            f"The raster '{settings.input_path}' has no valid pixels in BANDS {raster.bands} (all nodata or "
            f"transparent). Choose another raster or other bands."
        )
    if valid < segments:
        raise InputError(f"Only {valid} valid {extractor.cell_units} for {segments} segments. {extractor.advice}")
    progress.start("Fitting centres")
    criterion, start = None, None
    if reference is not None:
        centres = reference["centres"]
    else:
        if automatic:
            k_max = min(settings.k_max, valid)
            segments, values, start = hierarchy.choose(extractor.vectors(sample), settings.k_min, k_max,
                                                       settings.seed, progress.check)
            criterion = dict(name=hierarchy.CRITERION, threshold=hierarchy.THRESHOLD, k_min=settings.k_min,
                             k_max=k_max, k=segments,
                             values=[[k, value] for k, value in sorted(values.items())])
            progress.log(hierarchy.evidence_text(criterion))
        centres = extractor.fit(sample, segments, settings.seed, progress.check, start=start)
    progress.update(1.0)
    return centres, criterion


def linear_indices(rows, cols, cells, grid_width):
    """Linear indices (row * grid width + col, int64) of cells at (``rows``, ``cols``) of ``cells`` (a Window on
    the cell grid)."""
    return (rows + cells.yoff).astype(np.int64) * grid_width + cols + cells.xoff
