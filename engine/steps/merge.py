"""Re-cut a label raster to fewer segments along the merge tree its metadata carries (``segmenter:merge``).

A segmentation writes the merge tree of its centres (engine/segmentation/hierarchy.py: Ward's linkage on the centres
weighted by their sampled sizes) as SEGMENTER_MERGES, with SEGMENTER_SIZES and SEGMENTER_CENTRES. Cutting it at k is a
lookup table from ids 1..K to ids 1..k (groups ordered by their darkest member), applied window by window: no features,
no refit, about the time of a copy. The output is a label raster like every other (colour table, ``.qml``,
SEGMENTER_* items: the groups' size-weighted centres, their sizes, the rest of the tree), so it can be cut again or
refined; cutting a raster at k equals cutting its source at k.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..rasters.labels import PresentIds, fewer_segments, finish_label_raster, ids_text, label_type, open_label_raster
from ..rasters.palette import qualitative
from ..rasters.raster_io import AtomicRaster
from ..rasters.windows import plan_windows
from ..runtime import checks
from ..runtime.errors import InputError
from ..runtime.memory import within_budget
from ..runtime.outputs import Destination, prepare_outputs
from ..runtime.params import INPUT, OUTPUT, SEGMENTS
from ..runtime.progress import Progress
from ..segmentation import hierarchy
from .window_step import Executor, LabelStep

BYTES_PER_PIXEL = 8  # ids read, looked up, in flight (WORKERS + 1 windows) and written


@dataclass
class MergeResult:
    output: str
    segments: int  # k of the output
    from_segments: int  # K of the input
    table: np.ndarray  # lookup table id -> merged id (0 -> 0)
    windows: int
    present: int  # segments that occur in the output


def tree_of(meta, path):
    """(centres (K, C), sizes (K,), merges) of a label raster's ``LabelMeta``, checked, or an ``InputError``."""
    k = meta.k
    items = meta.raw
    hint = (" Re-cutting needs a label raster written by segmenter:kmeans or segmenter:cnn (version 0.3 or later), "
            "or by steps after them (blur, knn_refine, merge), which carry the tree.")
    if not k or "merges" not in items or "sizes" not in items or meta.centres is None:
        raise InputError(f"The label raster '{path}' carries no merge tree (SEGMENTER_MERGES).{hint}")
    try:
        centres = np.asarray(meta.centres, np.float64)
        sizes = np.asarray(items["sizes"], np.int64)
        merges = [[int(a), int(b), float(cost)] for a, b, cost in items["merges"]]
    except (TypeError, ValueError):
        raise InputError(f"The label raster '{path}' has a damaged merge tree (SEGMENTER_MERGES or _SIZES).{hint}"
                         ) from None
    nodes = set(range(1, k + 1))
    for number, (a, b, _) in enumerate(merges):
        if a not in nodes or b not in nodes or a == b:
            raise InputError(f"The label raster '{path}' has a damaged merge tree: merge {number + 1} joins nodes "
                             f"{a} and {b}.{hint}")
        nodes -= {a, b}
        nodes.add(k + 1 + number)
    if centres.shape[0] != k or sizes.shape != (k,) or len(merges) != k - 1 or not np.isfinite(centres).all():
        raise InputError(f"The label raster '{path}' has a damaged merge tree: K = {k}, {centres.shape[0]} centres, "
                         f"{sizes.size} sizes, {len(merges)} merges.{hint}")
    return centres, sizes, merges


@dataclass(frozen=True)
class MergeSettings(checks.Settings):
    """The arguments of ``merge_labels``, checked (``checked``)."""

    input_path: str = checks.rule(checks.path, INPUT)
    output_path: str = checks.rule(checks.path, OUTPUT)
    segments: int = checks.rule(checks.whole, SEGMENTS)
    memory_mb: float = checks.rule(checks.memory, default=256)
    scheduler: Any = None


@dataclass(frozen=True)
class MergeStep(LabelStep):
    """A window's ids looked up in ``table`` (id -> merged id, 0 -> 0)."""

    table: np.ndarray = None

    stage: ClassVar[str] = "Merging segments"

    def compute(self, window, ids, tick=None):
        k = len(self.table) - 1
        if ids.size and int(ids.max()) > k:
            raise InputError(f"The label raster '{self.path}' holds ids above its K ({k}): "
                             f"{ids_text(np.unique(ids[ids > k]).tolist())}.")
        return self.table[ids]


@within_budget
def merge_labels(input_path: str, output_path: str, segments: int, memory_mb: float = 256,
                 progress: Progress | None = None, scheduler: Any = None) -> MergeResult:
    """Re-cut the label raster ``input_path`` to ``segments`` along its merge tree into ``output_path``.

    Parameters
    ----------
    input_path, output_path : str
        A label raster carrying SEGMENTER_MERGES (every kmeans / cnn output, and the steps after them), and where
        to write the re-cut raster (GeoTIFF with its ``.qml``, committed atomically).
    segments : int
        The K of the output: 2 .. the input's K.
    memory_mb : float
        The memory budget (MB) of the windows in flight.
    progress : Progress, optional
        Progress, cancel and log.
    scheduler : str or distributed.Client, optional
        A Dask scheduler to look the windows up on (the workers read ``input_path``); None or empty: here.

    Returns
    -------
    MergeResult

    Raises
    ------
    InputError
        No or a damaged merge tree, ``segments`` out of range, ids above K.
    """
    progress = progress or Progress()
    settings = MergeSettings.checked(input_path=input_path, output_path=output_path, segments=segments,
                                     memory_mb=memory_mb, scheduler=scheduler)
    input_path, output_path, segments, memory_mb = (settings.input_path, settings.output_path, settings.segments,
                                                    settings.memory_mb)
    labels = open_label_raster(input_path, check=progress.check)
    try:
        meta = labels.meta
        centres, sizes, merges = tree_of(meta, input_path)
        k = meta.k
        if not 2 <= segments <= k:
            raise InputError(f"{SEGMENTS} must be between 2 and the input's K ({k}); got {segments}.")
        outputs = prepare_outputs({INPUT: input_path}, [Destination(OUTPUT, output_path, "labels")], progress)
        table = hierarchy.cut(merges, k, segments).astype(np.uint8 if segments <= 255 else np.uint16)
        new_centres, new_sizes, rest = hierarchy.merged(centres, sizes, merges, segments)
        width, height = labels.width, labels.height
        windows = plan_windows(width, height, int(memory_mb * 2**20 * 0.75) // BYTES_PER_PIXEL,
                               row_step=labels.band.GetBlockSize()[1])
        groups = hierarchy.groups(merges, k, segments)
        progress.log(f"{width} x {height} px, {len(windows)} windows; K {k} -> {segments}: " + "; ".join(
            f"{new} = {'+'.join(map(str, members))}" for new, members in enumerate(groups, start=1)))
        step = MergeStep(input_path, table)
        progress.plan([(step.stage, 1)])
        progress.start(step.stage)
        present = PresentIds()
        metadata = {**meta.carried(), "centres": new_centres.tolist(), "sizes": new_sizes.tolist(), "merges": rest,
                    "merged": dict(k=k, to=segments, groups=groups)}
        with Executor(settings.scheduler, progress, memory_mb) as executor, outputs, AtomicRaster(
                output_path, width, height, 1, label_type(segments),
                labels.dataset.GetGeoTransform(can_return_null=True), labels.dataset.GetProjection(),
                palette=qualitative(segments), gcps_from=labels.dataset, group=outputs) as output:
            for window, merged in executor.map(step, windows, None if executor.on_cluster else labels):
                present.add(merged)
                output.write(merged, window.xoff, window.yoff)
                output.release_cache()
            finish_label_raster(output, segments, metadata)
            outputs.commit()
    finally:
        labels.close()
    few = fewer_segments(present, segments, "the input does not hold every id of the merged groups.")
    if few:
        progress.warn(few)
    return MergeResult(output_path, segments, k, table, len(windows), present.count)
