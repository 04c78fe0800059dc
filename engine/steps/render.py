"""Rendering a label raster: palettes, segment names, colour table + ``.qml``, RGBA composite, PNG quicklook.

The styled output is the label raster itself (same ids, same grid) with a new colour table; the composite
blends segment colours over the imagery at a given opacity (alpha 0 where the labels are nodata).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from osgeo import gdal

from ..rasters.labels import (
    NODATA,
    PresentIds,
    fewer_segments,
    finish_label_raster,
    label_doubt,
    label_type,
    open_label_raster,
    segment_names,
)
from ..rasters.palette import covering, qualitative, ramp
from ..rasters.raster_io import (
    AtomicRaster,
    byte_stretch,
    is_paletted,
    open_input,
    open_raster,
    read_window,
    value_ranges,
)
from ..rasters.windows import plan_windows
from ..runtime import checks
from ..runtime.errors import InputError, OutputError
from ..runtime.memory import within_budget
from ..runtime.outputs import Destination, prepare_outputs
from ..runtime.params import COMPOSITE, IMAGE, INPUT, OPACITY, OUTPUT, PALETTE, QUICKLOOK
from ..runtime.progress import Progress
from .window_step import Executor, LabelStep, WindowStep

PALETTES = ("qualitative", "mean_colour", "ramp")
BYTES_PER_PIXEL = 24  # of a window of the composite, the largest pass: ids, pixels as float32, overlay, blend
QUICKLOOK_SIDE = 1024


@dataclass
class RenderResult:
    output: str
    segments: int
    colours: list
    composite: str | None
    quicklook: str | None
    present: int = 0  # segments that occur in the labels (the SEGMENTS output)


def _same_grid(labels, image, labels_path, image_path):
    if (labels.RasterXSize, labels.RasterYSize) != (image.RasterXSize, image.RasterYSize) or (
        labels.GetGeoTransform(can_return_null=True) != image.GetGeoTransform(can_return_null=True)
    ):
        raise InputError(
            f"IMAGE '{image_path}' ({image.RasterXSize} x {image.RasterYSize} px) is not on the grid of the labels "
            f"'{labels_path}' ({labels.RasterXSize} x {labels.RasterYSize} px). Choose the raster the labels were "
            f"made from."
        )


def _open_image(path):
    """The imagery under the labels: its first three colour bands, its colour table's colours, or its first band
    repeated as grey."""
    dataset = open_raster(path, purpose="IMAGE raster")
    return open_input(path, None if dataset.RasterCount >= 3 or is_paletted(dataset) else [1])


def _windows(labels, memory_mb):
    pixels = memory_mb * 2**20 // (BYTES_PER_PIXEL * CompositeStep.in_flight())
    return plan_windows(labels.width, labels.height, pixels, step=1, row_step=256)


class _LabelsAndImage:
    """The labels and the imagery under them, open together (what the render steps read)."""

    def __init__(self, labels, image):
        self.labels, self.image = labels, image

    def close(self):
        self.labels.close()


@dataclass(frozen=True)
class _ImageStep(WindowStep):
    """A render pass over the labels and their imagery (a worker opens both by path)."""

    labels_path: str
    image_path: str

    workers: ClassVar[int] = 1  # here, one window at a time: the windows are planned one at a time (BYTES_PER_PIXEL)
    overlap: ClassVar[bool] = False

    @property
    def paths(self):
        return (self.labels_path, self.image_path)

    def open(self):
        return _LabelsAndImage(open_label_raster(self.labels_path), _open_image(self.image_path))


@dataclass(frozen=True)
class MeanColourStep(_ImageStep):
    """A window's pixel count and sums of its first three bands per id 0..``segments``."""

    segments: int = 0
    stage: ClassVar[str] = "Measuring segment colours"

    def read(self, inputs, window):
        pixels = inputs.image.read(window)[:3]
        return inputs.labels.read(window), pixels, inputs.image.read_valid(window, pixels)

    def compute(self, window, ids, pixels, valid, tick=None):
        size = self.segments + 1
        ids = ids.ravel()
        weights = None if valid is None else valid.ravel().astype(np.float64)
        counts = np.bincount(ids, weights, minlength=size)[:size]
        sums = np.zeros((3, size))
        for band in range(min(3, pixels.shape[0])):
            values = pixels[band].ravel().astype(np.float64)
            sums[band] = np.bincount(ids, values if weights is None else values * weights, minlength=size)[:size]
        return counts, sums, pixels.shape[0]


def mean_colours(executor, labels, image, windows):
    """Mean image colour (first three bands, 0..255) of every segment, in one streaming pass."""
    k = labels.segments
    sums = np.zeros((3, k + 1))
    counts = np.zeros(k + 1)
    step = MeanColourStep(labels.path, image.path, k)
    for _, (window_counts, window_sums, bands) in executor.map(step, windows, _LabelsAndImage(labels, image)):
        counts += window_counts
        sums[:bands] += window_sums[:bands]
    if bands < 3:
        sums[bands:] = sums[0]
    means = sums[:, 1:] / np.maximum(counts[1:], 1)
    if image.data_type != gdal.GDT_Byte:
        low, high = means.min(), means.max()
        means = (means - low) * (255.0 / max(high - low, 1e-9))
    return [tuple(int(round(v)) for v in np.clip(means[:, i], 0, 255)) for i in range(k)]


@dataclass(frozen=True)
class RenderSettings(checks.Settings):
    """The arguments of ``render_labels``, checked (``checked``)."""

    input_path: str = checks.rule(checks.path, INPUT)
    output_path: str = checks.rule(checks.path, OUTPUT)
    palette: str = checks.rule(checks.choice, PALETTE, "qualitative", options=PALETTES)
    image_path: str | None = checks.rule(checks.path, IMAGE, None, optional=True)
    opacity: float = checks.rule(checks.number, OPACITY, 0.5, low=0, high=1)
    composite_path: str | None = checks.rule(checks.path, COMPOSITE, None, optional=True)
    quicklook_path: str | None = checks.rule(checks.path, QUICKLOOK, None, optional=True)
    names: list | None = checks.rule(checks.names, default=None)
    memory_mb: float = checks.rule(checks.memory, default=256)
    scheduler: Any = None


def _open_inputs(settings, progress):
    """The labels (warned of when they do not look like labels) and, when the palette or the composite needs it,
    the imagery on their grid."""
    labels = open_label_raster(settings.input_path, check=progress.check)
    doubt = label_doubt(settings.input_path, labels.metadata, labels.present)
    if doubt:
        progress.warn(doubt)
    if not (settings.palette == "mean_colour" or settings.composite_path):
        return labels, None
    if not settings.image_path:
        raise InputError("The mean-colour palette and the composite need IMAGE: choose the raster the labels were "
                         "made from.")
    image = _open_image(settings.image_path)
    _same_grid(labels.dataset, image.dataset, settings.input_path, settings.image_path)
    return labels, image


@within_budget
def render_labels(input_path: str, output_path: str, palette: str = "qualitative", image_path: str | None = None,
                  opacity: float = 0.5, composite_path: str | None = None, quicklook_path: str | None = None,
                  names: list[str] | str | None = None, memory_mb: float = 256, progress: Progress | None = None,
                  scheduler: Any = None) -> RenderResult:
    """Style a label raster; optionally write an RGBA composite over its imagery and a PNG quicklook.

    Parameters
    ----------
    input_path, output_path : str
        The label raster, and the styled copy (same ids and grid, a new colour table and ``.qml``).
    palette : {"qualitative", "mean_colour", "ramp"}
        The segments' colours; "mean_colour" measures them on ``image_path``.
    image_path : str, optional
        The raster the labels were made from (needed by "mean_colour" and the composite).
    opacity : float
        The segment colours' weight (0..1) in the composite.
    composite_path, quicklook_path : str, optional
        An RGBA GeoTIFF of the colours over the imagery; a PNG of the colours, at most 1024 px on a side.
    names : list of str or str, optional
        The segments' names (default: the metadata's, else "Segment i").
    memory_mb : float
        The memory budget (MB) of a window.
    progress : Progress, optional
        Progress, cancel and log.
    scheduler : str or distributed.Client, optional
        Where the windows are computed: a Dask scheduler (its workers read INPUT and IMAGE: shared storage), or
        None / empty for this process; the files are byte-identical either way.

    Returns
    -------
    RenderResult
        K, the colours used, the outputs written and the segments present.
    """
    progress = progress or Progress()
    settings = RenderSettings.checked(input_path=input_path, output_path=output_path, palette=palette,
                                      image_path=image_path, opacity=opacity, composite_path=composite_path,
                                      quicklook_path=quicklook_path, names=names, memory_mb=memory_mb,
                                      scheduler=scheduler)
    input_path, output_path, palette, image_path = (settings.input_path, settings.output_path, settings.palette,
                                                    settings.image_path)
    composite_path, quicklook_path, memory_mb = settings.composite_path, settings.quicklook_path, settings.memory_mb
    opacity, names = settings.opacity, settings.names
    labels, image = _open_inputs(settings, progress)
    outputs = prepare_outputs(
        {INPUT: input_path, IMAGE: image_path},
        [Destination(OUTPUT, output_path, "labels"), Destination(COMPOSITE, composite_path, optional=True),
         Destination(QUICKLOOK, quicklook_path, "png", optional=True)],
        progress)
    segments = labels.segments
    names = names or labels.meta.names_for(segments) or segment_names(segments)
    if len(names) != segments:
        raise InputError(f"{len(names)} segment names given for {segments} segments.")
    windows = _windows(labels, memory_mb)
    progress.plan([("Measuring segment colours", 1 if palette == "mean_colour" else 0),
                   ("Writing styled labels", 1), ("Writing composite", 2 if composite_path else 0),
                   ("Writing quicklook", 0.2 if quicklook_path else 0)])
    with Executor(scheduler, progress, memory_mb) as executor, outputs:  # every output in place at the end, or none
        if palette == "mean_colour":
            progress.start("Measuring segment colours")
            colours = mean_colours(executor, labels, image, windows)
        else:
            colours = qualitative(segments) if palette == "qualitative" else ramp(segments)
        progress.start("Writing styled labels")
        segments, colours, present = _write_styled(executor, labels, windows, colours, names, palette, output_path,
                                                   outputs)
        few = fewer_segments(present, segments, f"the other ids do not occur in '{input_path}'.")
        if few:
            progress.warn(few)
        if composite_path:
            progress.start("Writing composite")
            _write_composite(executor, labels, image, windows, colours, opacity, composite_path, outputs)
        if quicklook_path:
            progress.start("Writing quicklook")
            _write_quicklook(labels, colours, quicklook_path, outputs)
            progress.update(1.0)
        outputs.commit()
    return RenderResult(output_path, segments, colours, composite_path, quicklook_path, present.count)


@dataclass(frozen=True)
class StyledLabelsStep(LabelStep):
    """A window of the labels, as they are (the styled output is the input with new colours)."""

    stage: ClassVar[str] = "Writing styled labels"
    workers: ClassVar[int] = 1
    overlap: ClassVar[bool] = False


def _write_styled(executor, labels, windows, colours, names, palette, path, group):
    """The labels with ``colours`` and ``names`` (legend entries for ids past K too); (K, colours, present ids)."""
    present = PresentIds()
    with AtomicRaster(path, labels.width, labels.height, 1, label_type(labels.segments),
                      labels.dataset.GetGeoTransform(can_return_null=True), labels.dataset.GetProjection(),
                      palette=colours, gcps_from=labels.dataset, group=group) as out:
        for window, ids in executor.map(StyledLabelsStep(labels.path), windows, labels):
            present.add(ids)
            out.write(ids, window.xoff, window.yoff)
            out.release_cache()
        # ids past K (metadata naming fewer segments than the raster holds) get legend entries too
        segments, colours, names = covering(labels.segments, present.highest, colours, names)
        finish_label_raster(out, segments, {**labels.meta.carried(), "palette": palette}, colours, names)
    return segments, colours, present


def _lookup(colours):
    table = np.zeros((max(len(colours) + 1, 256), 3), np.float32)
    table[1 : len(colours) + 1] = colours
    return table


@dataclass(frozen=True)
class CompositeStep(_ImageStep):
    """A window's segment colours blended over its imagery: RGB (3, h, w) and alpha (0 where the labels are
    nodata)."""

    table: np.ndarray = None  # id -> colour (float32)
    opacity: float = 0.5
    ranges: list | None = None  # the imagery's display stretch (None: 8-bit, as it is)
    stage: ClassVar[str] = "Writing composite"

    def read(self, inputs, window):
        return inputs.labels.read(window), inputs.image.read(window)

    def compute(self, window, ids, pixels, tick=None):
        pixels = pixels.astype(np.float32)
        if self.ranges is not None:
            pixels = byte_stretch(self.ranges)(pixels)
        if pixels.shape[0] < 3:
            pixels = np.repeat(pixels[:1], 3, axis=0)
        overlay = np.moveaxis(self.table[ids], -1, 0)
        blended = np.rint(pixels[:3] * (1.0 - self.opacity) + overlay * self.opacity).astype(np.uint8)
        return blended, np.where(ids == NODATA, 0, 255).astype(np.uint8)


def _write_composite(executor, labels, image, windows, colours, opacity, path, group):
    """The RGBA composite: segment colours at ``opacity`` over the imagery (stretched for display when not 8-bit,
    as the segmentation steps read it, so a 16-bit or float scene is not drawn white)."""
    step = CompositeStep(labels.path, image.path, _lookup(colours), opacity, value_ranges(image))
    with AtomicRaster(path, labels.width, labels.height, 4, gdal.GDT_Byte,
                      labels.dataset.GetGeoTransform(can_return_null=True), labels.dataset.GetProjection(),
                      gcps_from=labels.dataset, group=group) as out:
        for band, interpretation in enumerate((gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand,
                                               gdal.GCI_AlphaBand), start=1):
            out.band(band).SetColorInterpretation(interpretation)
        for window, (blended, alpha) in executor.map(step, windows, _LabelsAndImage(labels, image)):
            for band in range(3):
                out.write(blended[band], window.xoff, window.yoff, band + 1)
            out.write(alpha, window.xoff, window.yoff, 4)
            out.release_cache()
        out.commit()


def _write_quicklook(labels, colours, path, group):
    """A PNG of the segment colours, at most QUICKLOOK_SIDE px on its longer side (nearest sampling)."""
    scale = min(1.0, QUICKLOOK_SIDE / max(labels.width, labels.height))
    width, height = max(1, round(labels.width * scale)), max(1, round(labels.height * scale))
    ids = read_window(labels.band, 0, 0, labels.width, labels.height, labels.path, buf_xsize=width, buf_ysize=height)
    ids = labels.as_ids(ids)
    table = _lookup(colours).astype(np.uint8)
    memory = gdal.GetDriverByName("MEM").Create("", width, height, 4, gdal.GDT_Byte)
    rgb = table[ids]
    for band in range(3):
        memory.GetRasterBand(band + 1).WriteArray(rgb[..., band])
    memory.GetRasterBand(4).WriteArray(np.where(ids == NODATA, 0, 255).astype(np.uint8))
    group.write_file(path, _png_bytes(memory))


def _png_bytes(dataset):
    """``dataset`` encoded as PNG, in memory (written to disk by the caller, where every write is checked)."""
    name = f"/vsimem/segmenter-quicklook-{uuid.uuid4().hex}.png"
    try:
        encoded = gdal.GetDriverByName("PNG").CreateCopy(name, dataset)
        if encoded is None:
            raise OutputError("GDAL could not encode the quicklook as PNG.")
        encoded = None  # closed: the PNG is complete
        handle = gdal.VSIFOpenL(name, "rb")
        try:
            gdal.VSIFSeekL(handle, 0, 2)
            size = gdal.VSIFTellL(handle)
            gdal.VSIFSeekL(handle, 0, 0)
            data = gdal.VSIFReadL(1, size, handle)
        finally:
            gdal.VSIFCloseL(handle)
    finally:
        for leftover in (name, name + ".aux.xml"):
            if gdal.VSIStatL(leftover) is not None:
                gdal.Unlink(leftover)
    if not data:
        raise OutputError("GDAL could not encode the quicklook as PNG (empty result).")
    return data
