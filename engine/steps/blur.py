"""Label smoothing ("blur"): every pixel takes the segment that wins a vote of its neighbourhood.

Majority: a segment's votes at a pixel are the box sum of its 0/1 mask (the predecessor's smoothing).
Gaussian: the box is applied three times per axis, which approximates a Gaussian of each segment's one-hot
with the spread (standard deviation) of the box it replaces. Votes are integer counts computed the same way
wherever a window starts, so a tiled run is byte-identical to an untiled one.

Rules of the vote: nodata (0) never votes and stays 0; a pixel keeps its label when that label is among the
most voted, otherwise it takes the most voted segment with the lowest id. A valid pixel always votes for
itself, so no valid pixel is left without votes. Beyond the raster's edge there are no votes.

``smooth`` is the window-level API (numpy only, for any scheduler); ``blur_labels`` streams a raster through
it in strips grown by the reach of all passes. Inside a window each pass runs on chunks small enough for the
CPU cache, and the window shrinks by one pass reach per pass.
"""

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..backends import distributed
from ..rasters.colour_tables import table_colours
from ..rasters.labels import (
    MAX_ID,
    NODATA,
    LabelRaster,
    PresentIds,
    fewer_segments,
    finish_label_raster,
    ids_text,
    label_doubt,
    label_type,
    scan_ids,
)
from ..rasters.palette import covering, qualitative
from ..rasters.raster_io import AtomicRaster, damaged
from ..rasters.windows import Window, cells, plan_windows
from ..runtime import checks
from ..runtime.errors import InputError
from ..runtime.memory import within_budget
from ..runtime.outputs import Destination, prepare_outputs
from ..runtime.params import INPUT, ITERATIONS, METHOD, OUTPUT, RADIUS, STRENGTH
from ..runtime.progress import Progress
from .window_step import Executor, WindowStep

METHODS = ("majority", "gaussian")
# Box side (px) at block size 4 and passes per iteration: the predecessor's low / medium / high.
STRENGTHS = {"low": (5, 1), "medium": (11, 1), "high": (21, 2)}
DEFAULT_STRIDE = 4
MAX_RADIUS = 200
MAX_GAUSSIAN_RADIUS = 100  # three boxes per axis: three times the halo, and wide integer types
GAUSSIAN_BOXES = 3
CHUNK = 512  # chunk side (px): the buffers of a chunk stay in the CPU cache, where numpy runs much faster
MIN_CHUNK = 64  # below this the halo and per-call overheads outweigh any saving of memory
CHUNK_SHARE = 4  # at most 1/CHUNK_SHARE of the memory budget goes to the chunk buffers
STRIP_BYTES = 8  # per strip pixel and byte of id: this strip, the next one read ahead, pass results, the one written
MAX_WINDOW_PIXELS = 2**24  # larger strips only cost memory: the halo is already a small share of them
MAX_READ_AHEAD = 1024  # rows; inputs with taller blocks (one-strip files) are read row range by row range
OUTPUT_BLOCK = 256  # block height of the written GeoTIFF (GTIFF_OPTIONS): strips are cut on block rows
MANY_CANDIDATES = 64  # beyond this range of ids in a chunk, find the present ids by counting


@dataclass(frozen=True)
class Kernel:
    """``iterations`` x ``passes`` votes, each over a (2 radius + 1) px box or a Gaussian of that spread."""

    method: str
    radius: int
    passes: int
    iterations: int

    @property
    def boxes(self):
        """Boxes applied per axis in one pass."""
        return GAUSSIAN_BOXES if self.method == "gaussian" else 1

    @property
    def box_radius(self):
        if self.method == "majority":
            return self.radius
        # Three boxes of radius q have variance 3 q(q+1)/3 = q(q+1); one box of radius r has r(r+1)/3.
        target = self.radius * (self.radius + 1) / 3
        return min(range(1, self.radius + 1), key=lambda q: (abs(q * (q + 1) - target), q))

    @property
    def pass_reach(self):
        """How far (px) one pass looks from a pixel."""
        return self.boxes * self.box_radius

    @property
    def total_passes(self):
        return self.passes * self.iterations

    @property
    def reach(self):
        """How far (px) the whole run looks from a pixel: the halo a window needs."""
        return self.pass_reach * self.total_passes

    def describe(self):
        return dict(method=self.method, radius=self.radius, kernel_px=2 * self.radius + 1, passes=self.passes,
                    iterations=self.iterations, reach=self.reach)


def choose_kernel(method="majority", strength="medium", radius=0, iterations=1, stride=DEFAULT_STRIDE):
    """The kernel for the user's settings: STRENGTH scaled by stride / 4, or RADIUS (one pass per iteration)."""
    if method not in METHODS:
        raise InputError(f"{METHOD} must be one of {', '.join(METHODS)}; got '{method}'.")
    if strength not in STRENGTHS:
        raise InputError(f"{STRENGTH} must be one of {', '.join(STRENGTHS)}; got '{strength}'.")
    if radius < 0:
        raise InputError(f"{RADIUS} must be 0 (use {STRENGTH}) or a positive number of pixels; got {radius}.")
    if radius > MAX_RADIUS:
        raise InputError(f"{RADIUS} must be at most {MAX_RADIUS} px; got {radius}.")
    if method == "gaussian" and radius > MAX_GAUSSIAN_RADIUS:
        raise InputError(
            f"{RADIUS} must be at most {MAX_GAUSSIAN_RADIUS} px with {METHOD} gaussian; got {radius}. Use a smaller "
            f"{RADIUS} with more {ITERATIONS}, or {METHOD} majority."
        )
    if iterations < 1:
        raise InputError(f"{ITERATIONS} must be at least 1; got {iterations}.")
    if radius:
        return Kernel(method, int(radius), 1, int(iterations))
    side, passes = STRENGTHS[strength]
    side = max(3, round(side * stride / DEFAULT_STRIDE))
    side += 1 - side % 2  # odd, as the predecessor's kernels (84 px at block 16 became 85)
    return Kernel(method, side // 2, passes, int(iterations))


def _unsigned_type(maximum):
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if maximum <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise InputError("The kernel is too large for exact integer votes; choose a smaller RADIUS.")


class _BoxSums:
    """Sums of 2r+1 consecutive values along one axis of a C-contiguous 2-D array.

    Doubling: sums of 1, 2, 4, ... values, and the width made of such pieces: about 2 log2(2r+1) additions
    per value whatever r, exact on integers, each level in the smallest type that holds it. numpy's cumsum
    would not grow with r but costs about 20 additions per value (measured), so doubling is faster for every
    radius up to MAX_RADIUS.

    Both axes run as 1-D additions on the flat array, as fast as numpy goes: along rows, a sum that runs past
    the end of a row only lands in the last 2r columns of the result, which the caller treats as garbage.

    With ``cap``, a sum of at least ``cap`` may come out as any value from ``cap`` to the type's maximum - 1,
    while smaller sums stay exact. The majority vote uses it to stay in 8 bits: a segment with more than half
    the votes of a box wins outright, so its exact count does not matter.
    """

    def __init__(self, radius, axis, value_max, dtype, max_size, cap=None):
        self.radius, self.axis, self.dtype, self.cap = radius, axis, np.dtype(dtype), cap
        width = 2 * radius + 1
        if cap is None:
            top, copies = width.bit_length() - 1, 1
        else:
            top = max(level for level in range(width.bit_length()) if value_max << level <= cap)
            copies = width >> top
        rest = width - (copies << top)  # pieces: the binary digits of the rest, then copies of the top level
        pieces, offset = [], 0
        for level in [level for level in range(top) if rest >> level & 1] + [top] * copies:
            pieces.append((level, offset, value_max << level))
            offset += 1 << level
        # Pieces are added exactly within a group; groups are then added with the cap, which needs each group
        # after the first to be at most cap. Capped sums leave room for the +1 of a pixel's own label.
        limits = [np.iinfo(self.dtype).max - (cap is not None), cap]
        self.groups = []
        for piece in sorted(pieces, key=lambda piece: -piece[2]):
            fits = [group for number, group in enumerate(self.groups)
                    if sum(p[2] for p in group) + piece[2] <= limits[min(number, 1)]]
            if fits:
                fits[0].append(piece)
            else:
                self.groups.append([piece])
        self.level_types = [_unsigned_type(value_max << level) for level in range(1, top + 1)]
        # Preallocated, one per level: fresh arrays this large page-fault on every call.
        self.levels = [np.empty(max_size, level_type) for level_type in self.level_types]
        self.out = np.empty(max_size, self.dtype)
        self.spare = [np.empty(max_size, self.dtype) for _ in range(2 if len(self.groups) > 1 else 0)]

    def __call__(self, values):
        """Box sums of ``values`` (rows, stride): (rows - 2r, stride) along columns, (rows, stride) along rows."""
        rows, stride = values.shape
        unit = stride if self.axis == 0 else 1
        flat = values.reshape(-1)
        length = flat.size - 2 * self.radius * unit
        levels = [flat]
        for level_type, buffer in zip(self.level_types, self.levels):
            previous, span = levels[-1], (1 << (len(levels) - 1)) * unit
            count = previous.size - span
            levels.append(np.add(previous[:count], previous[span : span + count], out=buffer[:count], dtype=level_type))
        for number, group in enumerate(self.groups):
            pieces = [levels[level][offset * unit : offset * unit + length] for level, offset, _ in group]
            out = self.out[:length] if number == 0 else self.spare[0][:length]
            if len(pieces) > 1:
                np.add(pieces[0], pieces[1], out=out, dtype=self.dtype)
            elif number:
                out = pieces[0]
            else:
                np.copyto(out, pieces[0])
            for piece in pieces[2:]:
                np.add(out, piece, out=out, dtype=self.dtype)
            if number:  # min(total + group, cap) without overflow: min(total, cap - group) + group
                total = self.out[:length]
                room = np.subtract(self.cap, out, out=self.spare[1][:length], dtype=self.dtype)
                np.minimum(total, room, out=total)
                np.add(total, out, out=total)
        if self.axis == 0:
            return self.out[:length].reshape(rows - 2 * self.radius, stride)
        return self.out[: flat.size].reshape(rows, stride)


class _Voter:
    """One pass of votes on chunks of at most ``chunk`` x ``chunk`` px, with buffers allocated once.

    A chunk is processed with its halo ("padded", width W): every array keeps rows W long, so that all
    additions run on contiguous memory; the columns past the chunk's width are garbage and never read back.
    """

    def __init__(self, kernel, label_dtype, chunk):
        q, boxes = kernel.box_radius, kernel.boxes
        self.reach = kernel.pass_reach
        self.label_dtype = np.dtype(label_dtype)
        self.size = chunk
        side, width = chunk + 2 * self.reach, 2 * q + 1
        area = side * side
        total = width ** (2 * boxes)  # all the votes of a box
        cap = total // 2 + 1  # a segment with this many votes has more than all others together
        if total + 1 > np.iinfo(np.uint8).max and cap < np.iinfo(np.uint8).max:
            self.key_type, last_cap = np.dtype(np.uint8), cap
        else:
            self.key_type, last_cap = _unsigned_type(total + 1), None  # +1: the pixel's own label wins ties
        self.box_sums = [_BoxSums(q, 0, width**stage, _unsigned_type(width ** (stage + 1)), area)
                         for stage in range(boxes)]
        self.box_sums += [_BoxSums(q, 1, width ** (boxes + stage), _unsigned_type(width ** (boxes + stage + 1)), area)
                          for stage in range(boxes - 1)]
        self.box_sums.append(_BoxSums(q, 1, width ** (2 * boxes - 1), self.key_type, area, last_cap))
        self.padded = np.empty(area, self.label_dtype)
        self.scratch = np.empty(area, self.label_dtype)
        self.mask = np.empty(area, bool)
        self.keys = np.empty(area, self.key_type)
        self.best = np.empty(area, self.key_type)
        self.winner = np.empty(area, self.label_dtype)
        self.better = np.empty(area, bool)
        self.scaled = np.empty(area, self.label_dtype)

    def chunk(self, source, y0, x0, height, width):
        """Voted labels of ``source[y0:y0+height, x0:x0+width]`` (a view, valid until the next call).

        Outside ``source`` is treated as nodata: callers pass arrays that end only where the raster ends, or
        keep far enough from their other ends.
        """
        reach = self.reach
        rows, stride = height + 2 * reach, width + 2 * reach
        padded = self._padded(source, y0 - reach, x0 - reach, rows, stride)
        centre = padded[reach : reach + height, reach : reach + width]
        candidates = self._candidates(padded)
        if len(candidates) <= 1:  # one segment (or none): every valid pixel keeps its label
            return centre
        shape, size = (height, stride), height * stride
        keys, best = self.keys[:size].reshape(shape), self.best[:size].reshape(shape)
        winner, scaled = self.winner[:size].reshape(shape), self.scaled[:size].reshape(shape)
        better = self.better[:size].reshape(shape)
        mask = self.mask[: rows * stride].reshape(rows, stride)
        own = mask.view(np.uint8).reshape(-1)[reach * stride + reach :][:size].reshape(shape)  # keys' layout
        first = True
        for label in candidates:  # ascending, and a later id must have strictly more votes to win
            np.equal(padded, label, out=mask)
            if not mask.any():
                continue
            votes = mask.view(np.uint8)
            for box_sums in self.box_sums:
                votes = box_sums(votes)
            if first:  # pixels without votes here all have their own label (which has votes) still to come
                np.copyto(best, votes)
                winner.fill(label)
                first = False
                continue
            np.add(votes, own, out=keys, dtype=self.key_type)  # its own label wins a tie for a pixel
            np.greater(keys, best, out=better)
            np.multiply(better.view(np.uint8), self.label_dtype.type(label), out=scaled, dtype=self.label_dtype)
            np.maximum(winner, scaled, out=winner)  # ids rise through the loop: max() = take where better
            np.maximum(best, votes, out=best)
        voted = winner[:, :width]
        np.multiply(voted, np.not_equal(centre, NODATA, out=better[:, :width]), out=voted, dtype=self.label_dtype)
        return voted

    def _padded(self, source, y0, x0, rows, cols):
        """``source[y0:y0+rows, x0:x0+cols]`` with nodata where that falls outside ``source``."""
        y1, x1 = y0 + rows, x0 + cols
        if y0 >= 0 and x0 >= 0 and y1 <= source.shape[0] and x1 <= source.shape[1]:
            return source[y0:y1, x0:x1]
        padded = self.padded[: rows * cols].reshape(rows, cols)
        padded.fill(NODATA)
        top, left = max(0, -y0), max(0, -x0)
        inside = source[max(0, y0) : min(y1, source.shape[0]), max(0, x0) : min(x1, source.shape[1])]
        padded[top : top + inside.shape[0], left : left + inside.shape[1]] = inside
        return padded

    def _candidates(self, padded):
        """Ids that may be present, ascending; [] when all is nodata, one id when the chunk is uniform."""
        top = int(padded.max())
        if top == NODATA:
            return []
        shifted = np.subtract(padded, 1, out=self.scratch[: padded.size].reshape(padded.shape))
        low = int(shifted.min()) + 1  # nodata wrapped round to the largest value
        if top - low < MANY_CANDIDATES:
            return range(low, top + 1)
        present = np.flatnonzero(np.bincount(padded.ravel()))
        return present[present != NODATA].tolist()


def smooth(labels, kernel, margins=(0, 0, 0, 0), chunk=CHUNK, tick=None, voter=None):
    """The smoothed core of one window: all passes of ``kernel`` on ``labels`` (ids, 0 = nodata).

    ``labels`` is the core grown by ``margins`` = (top, bottom, left, right) px. A side whose margin is smaller
    than ``kernel.reach`` is the raster's edge. ``tick(fraction)`` is called as the work advances (it may raise
    to cancel). ``voter`` (from ``make_voter``) holds the chunk buffers; pass one to reuse them across windows.
    """
    voter = voter or make_voter(kernel, labels.dtype, chunk)
    chunk, margins, remaining, source = voter.size, list(margins), kernel.reach, labels
    for number in range(kernel.total_passes):
        # A pass spoils pass_reach px along the inner sides; keep what the remaining passes need.
        remaining -= kernel.pass_reach
        kept = [min(margin, remaining) for margin in margins]
        dy, dx = margins[0] - kept[0], margins[2] - kept[2]
        height = source.shape[0] - dy - (margins[1] - kept[1])
        width = source.shape[1] - dx - (margins[3] - kept[3])
        result = np.empty((height, width), source.dtype)
        for y in range(0, height, chunk):
            rows = min(chunk, height - y)
            for x in range(0, width, chunk):
                cols = min(chunk, width - x)
                result[y : y + rows, x : x + cols] = voter.chunk(source, dy + y, dx + x, rows, cols)
            if tick:
                tick((number + (y + rows) / height) / kernel.total_passes)
        source, margins = result, kept
    return source


def make_voter(kernel, dtype, chunk=CHUNK):
    """The chunk worker ``smooth`` uses, with its buffers for ids of ``dtype``."""
    return _Voter(kernel, np.dtype(dtype), chunk)


@dataclass
class BlurResult:
    output: str
    segments: int
    kernel: Kernel
    windows: int
    changed: int  # pixels whose label changed
    present: int = 0  # segments that occur in the output (the SEGMENTS output)


def _open_labels(path):
    """The labels to smooth: a label raster of any integer type whose values are ids 0..65535."""
    labels = LabelRaster.open(path)
    if labels.dtype is None:
        low, high = _value_range(labels.band, path)  # other integer types: ids must fit the label contract
        if low < 0 or high > MAX_ID:
            raise InputError(
                f"The raster '{path}' holds values from {low:g} to {high:g}; segment ids must be 0..{MAX_ID} "
                f"(0 = nodata). Choose a label raster."
            )
        labels.segments = max(labels.segments, int(high))
        labels.dtype, labels.output_type = _unsigned_type(int(high)), label_type(labels.segments)
    return labels


_NO_IDS = ("The label raster '{path}' has no segment ids: every pixel is nodata. Choose a label raster with "
           "segments.")


def _value_range(band, path):
    """Smallest and largest id of a band (a full read), nodata left out."""
    try:
        return band.ComputeRasterMinMax(False)
    except RuntimeError as error:
        if "no valid pixels" not in str(error):
            raise damaged(path, error) from None
        raise InputError(_NO_IDS.format(path=path)) from None


class _StripReader:
    """Rows of successive overlapping strips, each block row of the input decoded once.

    Reads run ahead to the input's block boundary and keep what the next strip's halo needs: neither the halo
    above (already read) nor the one below (the next strip's core) is decoded twice.
    """

    def __init__(self, labels):
        block_height = labels.dataset.GetRasterBand(1).GetBlockSize()[1]
        self.labels, self.block_height = labels, block_height if block_height <= MAX_READ_AHEAD else 1
        self.rows, self.start, self.end = None, 0, 0

    def read(self, y0, y1):
        if y1 > self.end:
            end = min(self.labels.height, cells(y1, self.block_height) * self.block_height)
            fresh = self.labels.read(Window(0, self.end, self.labels.width, end - self.end))
            self.labels.release_cache()
            if self.rows is not None and y0 < self.end:
                keep = max(y0, self.start)
                self.rows, self.start = np.concatenate([self.rows[keep - self.start :], fresh]), keep
            else:
                self.rows, self.start = fresh, self.end
            self.end = end
        return self.rows[y0 - self.start : y1 - self.start]


def _windows(width, height, reach, memory_mb, id_bytes):
    """Strips cut on output block rows whose grown height fits the budget; tiles if even a row does not."""
    pixels = int(memory_mb * 2**20 * (1 - 1 / CHUNK_SHARE)) // (STRIP_BYTES * id_bytes)
    rows = pixels // width - 2 * reach
    if rows >= 1:
        rows = min(rows, max(MAX_WINDOW_PIXELS // width, 20 * reach, OUTPUT_BLOCK))
        return plan_windows(width, height, rows * width, row_step=OUTPUT_BLOCK)
    side = max(1, math.isqrt(max(1, pixels)) - 2 * reach)
    return plan_windows(width, height, side * side)


def _chunk_side(kernel, memory_mb, dtype):
    """The largest chunk (up to CHUNK) whose buffers fit their share of the budget.

    Never below MIN_CHUNK or the pass reach: smaller chunks would spend most of their work on the halo.
    """
    probe = _Voter(kernel, dtype, 1)
    per_pixel = 4 * dtype.itemsize + 2 + 2 * probe.key_type.itemsize
    for box_sums in probe.box_sums:
        per_pixel += (1 + len(box_sums.spare)) * box_sums.dtype.itemsize
        per_pixel += sum(level_type.itemsize for level_type in box_sums.level_types)
    side = math.isqrt(int(memory_mb * 2**20 / CHUNK_SHARE // per_pixel)) - 2 * kernel.pass_reach
    return int(max(MIN_CHUNK, kernel.pass_reach, min(CHUNK, side)))


def _output_metadata(labels, kernel, stride, strength, segments):
    """The input's metadata (centres, features, method...) plus this run, appended to any earlier blur."""
    metadata = labels.meta.carried()
    history = metadata.get("blur")
    history = history if isinstance(history, list) else ([history] if history else [])
    metadata["blur"] = [*history, dict(kernel.describe(), strength=strength, stride=stride)]
    return metadata, labels.meta.names_for(segments)


@dataclass(frozen=True)
class BlurSettings(checks.Settings):
    """The arguments of ``blur_labels``, checked (``checked``): what the run and its step follow."""

    input_path: str = checks.rule(checks.path, INPUT)
    output_path: str = checks.rule(checks.path, OUTPUT)
    method: str = checks.rule(checks.choice, METHOD, "majority", options=METHODS)
    strength: str = checks.rule(checks.choice, STRENGTH, "medium", options=tuple(STRENGTHS))
    radius: int = checks.rule(checks.whole, RADIUS, 0)
    iterations: int = checks.rule(checks.whole, ITERATIONS, 1)
    memory_mb: float = checks.rule(checks.memory, default=256)
    scheduler: Any = None


class _BlurInputs:
    """The labels a blur reads: whole strips through ``_StripReader`` here (each block row decoded once), any
    window on a worker."""

    def __init__(self, labels, strips=False):
        self.labels, self.strips = labels, _StripReader(labels) if strips else None

    def read(self, window):
        if self.strips:
            return self.strips.read(window.yoff, window.yoff + window.height)
        ids = self.labels.read(window)
        self.labels.release_cache()
        return ids

    def close(self):
        self.labels.close()


@dataclass(frozen=True)
class BlurStep(WindowStep):
    """A window's smoothed core, the pixels it changed, and (``count_input``) the ids of its input core."""

    path: str
    kernel: Kernel
    chunk: int  # side of the voter's chunks (px)
    dtype: str  # the ids' numpy type
    count_input: bool  # the input's ids are not known from a scan: every window counts those of its core

    stage: ClassVar[str] = "Smoothing labels"
    workers: ClassVar[int] = 1  # the voter's buffers are planned once in MEMORY_MB
    ticks: ClassVar[bool] = True  # strips of many rows take a while: the bar moves within them

    @property
    def halo(self):
        return self.kernel.reach

    @property
    def paths(self):
        return (self.path,)

    def open(self):
        return _BlurInputs(_open_labels(self.path))

    def read(self, inputs, window):
        grown = window.grown(self.halo, inputs.labels.width, inputs.labels.height)
        return grown, inputs.read(grown)

    def compute(self, window, grown, ids, tick=None):
        top, left = window.yoff - grown.yoff, window.xoff - grown.xoff
        margins = (top, grown.height - top - window.height, left, grown.width - left - window.width)
        voter = distributed.cached(("voter", self.kernel, self.dtype, self.chunk),
                                   lambda: make_voter(self.kernel, np.dtype(self.dtype), self.chunk))
        smoothed = smooth(ids, self.kernel, margins, tick=tick, voter=voter)
        original = ids[top : top + window.height, left : left + window.width]
        present = None
        if self.count_input:
            seen = PresentIds()
            seen.add(original)
            present = np.asarray(seen.ids, original.dtype)
        return smoothed, int(np.count_nonzero(smoothed != original)), present


def _scanned_ids(labels, path, progress):
    """The ids of a raster without Map Segmenter metadata (or K), from a scan; None when the metadata says K."""
    if labels.segments and labels.metadata:
        return None
    present = scan_ids(labels.dataset.GetRasterBand(1), path, labels.other_nodata, progress.check)
    if not present.count:
        raise InputError(_NO_IDS.format(path=path))
    doubt = label_doubt(path, labels.metadata, present)
    if doubt:
        progress.warn(doubt)
    return present


def _smooth(executor, step, windows, labels, output, input_ids, output_ids):
    """Smooth every window (here or on the cluster) and write it, in order; the pixels changed."""
    here = None if executor.on_cluster else _BlurInputs(
        labels, strips=all(window.width == labels.width for window in windows))
    changed = 0
    for window, (smoothed, window_changed, present) in executor.map(step, windows, here):
        changed += window_changed
        if present is not None and len(present):
            input_ids.add(present)
        output_ids.add(smoothed)
        output.write(smoothed, window.xoff, window.yoff)
        output.release_cache()
    return changed


def _report(progress, changed, width, height, input_ids, output_ids, segments):
    """Log the share of pixels changed; warn when the output holds fewer ids than K, and why."""
    share = 100 * changed / (width * height)
    progress.log(f"Smoothing changed {changed} of {width * height} pixels ({share:.1f} %).")
    removed = sorted(set(input_ids.ids) - set(output_ids.ids))
    reasons = [f"the input holds only {input_ids.count} of them."] if input_ids.count < segments else []
    if removed:
        reasons.append(f"smoothing removed id{'s' if len(removed) > 1 else ''} {ids_text(removed)}: "
                       f"{'their regions were' if len(removed) > 1 else 'its regions were all'} smaller than the "
                       f"kernel.")
    few = fewer_segments(output_ids, segments, " ".join(reasons))
    if few:
        progress.warn(few)


@within_budget
def blur_labels(input_path: str, output_path: str, method: str = "majority", strength: str = "medium",
                radius: int = 0, iterations: int = 1, memory_mb: float = 256, progress: Progress | None = None,
                scheduler: Any = None) -> BlurResult:
    """Smooth the label raster ``input_path`` into ``output_path``: same grid, ids, metadata and style.

    Parameters
    ----------
    input_path, output_path : str
        The label raster to smooth, and where to write the result (GeoTIFF, committed atomically with its ``.qml``).
    method : {"majority", "gaussian"}
        How a neighbourhood votes (see the module's docstring).
    strength : {"low", "medium", "high"}
        The kernel, scaled by the labels' block size; used when ``radius`` is 0.
    radius : int
        The kernel's radius in pixels (0: from ``strength``).
    iterations : int
        How many times the whole kernel is applied.
    memory_mb : float
        The memory budget (MB): windows, chunk buffers and GDAL's block cache fit in it.
    progress : Progress, optional
        Progress, cancel and log.
    scheduler : str or distributed.Client, optional
        A Dask scheduler to smooth the windows on (the workers read ``input_path`` themselves: shared storage);
        None or empty: this process. The same bytes either way.

    Returns
    -------
    BlurResult

    Raises
    ------
    InputError, OutputError, ClusterError, Cancelled
        Bad arguments or inputs, a destination that cannot be written, a cluster that does not answer, a cancel:
        nothing is left at ``output_path``.
    """
    progress = progress or Progress()
    settings = BlurSettings.checked(input_path=input_path, output_path=output_path, method=method, strength=strength,
                                    radius=radius, iterations=iterations, memory_mb=memory_mb, scheduler=scheduler)
    input_path, output_path, memory_mb = settings.input_path, settings.output_path, settings.memory_mb
    labels = _open_labels(input_path)
    try:
        present_in = _scanned_ids(labels, input_path, progress)
        stride = labels.meta.stride
        kernel = choose_kernel(settings.method, settings.strength, settings.radius, settings.iterations,
                               stride or DEFAULT_STRIDE)
        outputs = prepare_outputs({INPUT: input_path}, [Destination(OUTPUT, output_path, "labels")], progress)
        width, height = labels.width, labels.height
        windows = _windows(width, height, kernel.reach, memory_mb, labels.dtype.itemsize)
        step = BlurStep(input_path, kernel, _chunk_side(kernel, memory_mb, labels.dtype), labels.dtype.str,
                        present_in is None)
        if stride is None and not settings.radius:
            progress.log(f"No block size in the metadata of '{input_path}': kernels assume {DEFAULT_STRIDE} px "
                         f"blocks.")
        progress.log(f"{width} x {height} px; {kernel.method}, {2 * kernel.radius + 1} px, {kernel.total_passes} "
                     f"pass(es); halo {kernel.reach} px; {len(windows)} windows; chunks of {step.chunk} px")
        progress.plan([(step.stage, 1)])
        progress.start(step.stage)
        input_ids, output_ids = present_in or PresentIds(), PresentIds()  # the input's counted as read if not scanned
        # Smoothing never makes new ids: K is known now (a scan when the metadata does not say).
        expected_k = labels.segments or present_in.highest
        band = labels.dataset.GetRasterBand(1)
        with Executor(settings.scheduler, progress, memory_mb) as executor, outputs, AtomicRaster(
                output_path, width, height, 1, labels.output_type, labels.dataset.GetGeoTransform(can_return_null=True),
                labels.dataset.GetProjection(), palette=table_colours(band, expected_k) or qualitative(expected_k),
                gcps_from=labels.dataset, group=outputs) as output:
            changed = _smooth(executor, step, windows, labels, output, input_ids, output_ids)
            metadata, names = _output_metadata(labels, kernel, stride, None if settings.radius else settings.strength,
                                               expected_k)
            # ids past K (metadata naming fewer segments than the raster holds) get legend entries too
            segments, colours, names = covering(expected_k, output_ids.highest, table_colours(band, expected_k),
                                                names)
            finish_label_raster(output, segments, metadata, colours, names)
            outputs.commit()
    finally:
        labels.close()
    _report(progress, changed, width, height, input_ids, output_ids, segments)
    return BlurResult(output_path, segments, kernel, len(windows), changed, output_ids.count)
