"""The label-raster contract: ids 1..K, 0 = nodata, metadata, colour table and a QGIS ``.qml`` sidecar."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from osgeo import gdal

from .. import VERSION
from ..runtime import params
from ..runtime.errors import InputError
from ..runtime.outputs import CommitGroup, style_path
from .colour_tables import colour_table, table_colours, table_entries
from .metadata import MAX_ID, LabelMeta, read_metadata, write_metadata
from .palette import qualitative
from .raster_io import AtomicRaster, open_raster, read_window
from .windows import Window

NODATA = 0
MAX_SEGMENTS = 254
MANY_IDS = 64  # more distinct values than this and no Map Segmenter metadata: probably an image, not labels
SCAN_PIXELS = 2**22  # pixels per read when a label raster is scanned for its ids


def label_type(segments: int) -> int:
    """The GDAL type of a label raster of ``segments`` ids: Byte up to MAX_SEGMENTS, else UInt16."""
    return gdal.GDT_Byte if segments <= MAX_SEGMENTS else gdal.GDT_UInt16


def segment_names(segments: int) -> list[str]:
    """The default names "Segment 1" .. "Segment K"."""
    return [f"Segment {index}" for index in range(1, segments + 1)]


def style_label_band(band: gdal.Band, segments: int, colours: Sequence[tuple] | None = None) -> None:
    """Nodata 0 and a colour table on a label band (names go to metadata and the .qml: GeoTIFF cannot hold
    category names without an .aux.xml sidecar). The table is left alone when it is already right."""
    band.SetNoDataValue(NODATA)
    table = colour_table(colours or qualitative(segments))
    if table_entries(band.GetRasterColorTable()) != table_entries(table):
        band.SetRasterColorTable(table)


LABEL_TYPES = {gdal.GDT_Byte: np.uint8, gdal.GDT_UInt16: np.uint16}
INTEGER_TYPES = {
    gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32,
    *(getattr(gdal, name) for name in ("GDT_Int8", "GDT_UInt64", "GDT_Int64") if hasattr(gdal, name)),
}


def nodata_as_zero(values: np.ndarray, other_nodata: float | None) -> np.ndarray:
    """Label values with a declared nodata other than 0 (see ``check_label_band``) turned into 0 (in place)."""
    if other_nodata is not None:
        values[values == other_nodata] = NODATA
    return values


def check_label_band(dataset: gdal.Dataset, path: str, purpose: str = "label raster",
                     hint: str = "") -> tuple[gdal.Band, float | None]:
    """The band of segment ids of an opened label raster, and its nodata value when that is not 0 (else None).

    The checks every step that reads labels makes (one band, integer values), with the same messages.

    Parameters
    ----------
    dataset : gdal.Dataset
        The opened raster.
    path : str
        Its path, as messages name it.
    purpose : str
        What the raster is to the step, as messages name it ("label raster", "reference label raster"...).
    hint : str
        Text appended to the messages (advice of the calling step).

    Returns
    -------
    band : gdal.Band
        Band 1.
    other_nodata : float or None
        The band's declared nodata value when it is not 0 (read as 0), else None.

    Raises
    ------
    InputError
        The raster has more than one band or non-integer values.
    """
    band = dataset.GetRasterBand(1)
    if band.DataType not in INTEGER_TYPES:
        raise InputError(
            f"The {purpose} '{path}' holds {gdal.GetDataTypeName(band.DataType)} values, not integer segment ids. "
            f"Choose a label raster (ids 1..K, 0 = nodata) such as the {params.OUTPUT} of segmenter:kmeans.{hint}"
        )
    if dataset.RasterCount != 1:
        raise InputError(
            f"The {purpose} '{path}' has {dataset.RasterCount} bands; a label raster has one band of segment ids. "
            f"Choose the {params.OUTPUT} of a Map Segmenter segmentation (for example segmenter:kmeans).{hint}"
        )
    nodata = band.GetNoDataValue()
    return band, (None if nodata is None or nodata == NODATA or not np.isfinite(nodata) else nodata)


@dataclass
class LabelRaster:
    """An opened label raster (one integer band of ids, 0 = nodata) and what its metadata says: the one type every
    step that reads labels opens them with (render, blur, knn_refine, statistics; REFERENCE reads its metadata)."""

    path: str
    dataset: gdal.Dataset
    band: gdal.Band
    segments: int  # K: from the metadata, or a scan, or the value range; 0 while only the data can tell
    metadata: dict
    other_nodata: float = None  # a declared nodata value other than 0: read as 0
    present: PresentIds = None  # the ids found when the metadata did not give K (a scan of the raster)
    dtype: np.dtype = None  # ids as the engine holds them (None: not a Byte/UInt16 raster; see ``open``)
    output_type: int = None  # the GDAL type of a label raster with these ids

    @classmethod
    def open(cls, path: str, purpose: str = "label raster", hint: str = "") -> LabelRaster:
        """Open and check a label raster (one band of integers); K from its metadata (0 when it does not say).
        ``dtype`` and ``output_type`` are set for Byte and UInt16 rasters, the types Map Segmenter writes.

        Parameters
        ----------
        path : str
            The raster's path or GDAL dataset name.
        purpose, hint : str
            As ``check_label_band`` takes them.

        Returns
        -------
        LabelRaster
            The opened raster; ``segments`` is 0 when its metadata does not give K.

        Raises
        ------
        InputError
            The raster cannot be opened, or is not one band of integers.
        """
        dataset = open_raster(path, purpose=purpose)
        band, other_nodata = check_label_band(dataset, path, purpose, hint)
        metadata = read_metadata(dataset)
        known = band.DataType in LABEL_TYPES
        return cls(path, dataset, band, LabelMeta.parse(metadata).k or 0, metadata, other_nodata,
                   dtype=np.dtype(LABEL_TYPES[band.DataType]) if known else None,
                   output_type=band.DataType if known else None)

    @property
    def meta(self) -> LabelMeta:
        """The metadata as a ``LabelMeta``."""
        return LabelMeta.parse(self.metadata)

    @property
    def width(self) -> int:
        return self.dataset.RasterXSize

    @property
    def height(self) -> int:
        return self.dataset.RasterYSize

    def read(self, window: Window) -> np.ndarray:
        """The ids of ``window`` (a ``Window``), nodata as 0, as ``dtype``."""
        ids = self.as_ids(read_window(self.band, *window.box, self.path))
        return ids if self.dtype is None else ids.astype(self.dtype, copy=False)

    def as_ids(self, values: np.ndarray) -> np.ndarray:
        return nodata_as_zero(values, self.other_nodata)

    def release_cache(self) -> None:
        """Drop GDAL's cached blocks of the labels: memory follows the window, not the raster."""
        self.dataset.FlushCache()

    def close(self) -> None:
        self.band = self.dataset = None


def open_label_raster(path: str, purpose: str = "label raster",
                      check: Callable[[], None] | None = None) -> LabelRaster:
    """Open a label raster written by a segmentation step: one Byte/UInt16 band; K from metadata or the maximum.

    Parameters
    ----------
    path : str
        The raster's path or GDAL dataset name.
    purpose : str
        What the raster is to the step, as messages name it.
    check : callable, optional
        Called between the strips of a scan for the highest id (it raises to cancel).

    Returns
    -------
    LabelRaster
        The opened raster with ``segments`` = K (from its metadata, else its highest id, then ``present`` holds
        the ids found).

    Raises
    ------
    InputError
        The raster cannot be opened, is not one band, or its ids are not Byte or UInt16.
    """
    labels = LabelRaster.open(path, purpose)
    if labels.dtype is None:
        raise InputError(
            f"The {purpose} '{path}' holds {gdal.GetDataTypeName(labels.band.DataType)} ids; this step reads the "
            f"label rasters Map Segmenter writes (Byte or UInt16 ids, 0 = nodata). Convert it with gdal_translate "
            f"-ot UInt16, or choose the {params.OUTPUT} of a Map Segmenter segmentation."
        )
    if not labels.segments:  # no K in the metadata: the highest id is K
        labels.present = scan_ids(labels.band, path, labels.other_nodata, check)
        labels.segments = labels.present.highest
    return labels


class PresentIds:
    """Which ids (1..65535) occur in windows of labels, exactly, for little work.

    A window (cut in chunks) whose ids up to its largest have all been seen already costs a max (from its smallest
    to its largest: a min and a max); only windows that may hold an unseen id are counted. Labels hold every id in
    their first windows as a rule, so counting the ids of a whole raster costs about one max per pixel."""

    CHUNK = 2**20  # pixels: bounds the temporaries of a count

    def __init__(self):
        self.seen = np.zeros(MAX_ID + 1, bool)

    def add(self, ids: np.ndarray) -> None:
        flat = ids.reshape(-1)
        for start in range(0, flat.size, self.CHUNK):
            part = flat[start : start + self.CHUNK]
            top = int(part.max())
            if top == NODATA or self.seen[1 : top + 1].all():  # the rule once the first windows are counted
                continue
            low = int((part - np.ones(1, part.dtype)).min()) + 1  # nodata wraps round to the largest value
            if self.seen[low : top + 1].all():
                continue
            self.seen[: top + 1] |= np.bincount(part, minlength=top + 1).astype(bool)
        self.seen[NODATA] = False

    @property
    def ids(self) -> list[int]:
        return np.flatnonzero(self.seen).tolist()

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.seen))

    @property
    def highest(self) -> int:
        present = np.flatnonzero(self.seen)
        return int(present[-1]) if len(present) else 0


def scan_ids(band: gdal.Band, path: str, other_nodata: float | None = None,
             check: Callable[[], None] | None = None) -> PresentIds:
    """The ``PresentIds`` of a whole label band (Byte or UInt16), read in strips of whole blocks; ``check()`` is
    called between strips (it raises to cancel).

    (GDAL's histogram would do it in C, but it saves itself in an .aux.xml beside the input.)

    Parameters
    ----------
    band : gdal.Band
        The label band.
    path : str
        Its raster's path, as messages name it.
    other_nodata : float, optional
        A declared nodata value other than 0, read as 0.
    check : callable, optional
        Called between strips.

    Returns
    -------
    PresentIds
        The ids that occur.

    Raises
    ------
    InputError
        A block cannot be read (a damaged file).
    """
    width, height = band.XSize, band.YSize
    block_height = band.GetBlockSize()[1]
    rows = max(1, SCAN_PIXELS // max(1, width) // block_height) * block_height
    present = PresentIds()
    for y in range(0, height, rows):
        values = read_window(band, 0, y, width, min(rows, height - y), path)
        present.add(nodata_as_zero(values, other_nodata))
        if check:
            check()
    band.GetDataset().FlushCache()
    return present


def ids_text(ids: Sequence[int], most: int = 12) -> str:
    """Ids as text for messages: "1, 2, 5" (or the first ``most`` and how many more)."""
    shown = ", ".join(map(str, ids[:most]))
    return shown if len(ids) <= most else f"{shown} and {len(ids) - most} more"


def label_doubt(path: str, metadata: dict, present: PresentIds | None) -> str | None:
    """A warning when ``path`` (``metadata``: its SEGMENTER_* items) does not look like a label raster: no Map
    Segmenter metadata and more than MANY_IDS distinct values, as in an image (a grey photo has about 255)."""
    if metadata or present is None or present.count <= MANY_IDS:
        return None
    return (
        f"'{path}' does not look like a label raster: it has no Map Segmenter metadata and {present.count} distinct "
        f"values, as an image has, so each value is taken as a segment (ids up to {present.highest}). If it is an "
        f"image, segment it first with segmenter:kmeans or segmenter:cnn and use their {params.OUTPUT} here."
    )


def fewer_segments(present: PresentIds, segments: int, reason: str) -> str | None:
    """A warning when only some of ``segments`` ids occur in an output (``present``: its ``PresentIds``)."""
    if present.count >= segments:
        return None
    one = present.count == 1
    return (f"Only {present.count} of the {segments} segments occur in the output (id{'' if one else 's'} "
            f"{ids_text(present.ids) or 'none'}): {reason} The result has {present.count} "
            f"segment{'' if one else 's'}.")


REFERENCE_ADVICE = ("Choose a label raster as segmenter:kmeans or segmenter:cnn wrote it (its SEGMENTER_* metadata "
                    f"intact), or leave {params.REFERENCE} empty to fit new centres.")


def read_reference(path: str) -> dict[str, Any]:
    """Centres and descriptor settings from a label raster written earlier, for consistent ids across rasters:
    its SEGMENTER_* items, checked by ``validate_reference`` (centres as a float64 array, K an int).

    Parameters
    ----------
    path : str
        The REFERENCE label raster.

    Returns
    -------
    dict
        Its SEGMENTER_* items (lower-case keys), ``centres`` as a float64 array and ``k`` an int.

    Raises
    ------
    InputError
        The raster cannot be opened, or its items are missing or damaged.
    """
    dataset = open_raster(path, purpose="reference label raster")
    return validate_reference(read_metadata(dataset), path)


def _damaged(path, item, problem):
    return InputError(f"The reference '{path}' has a damaged SEGMENTER_{item} item: {problem}. {REFERENCE_ADVICE}")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_reference(items: dict[str, Any], path: str) -> dict[str, Any]:
    """The metadata ``items`` of the reference at ``path`` (``read_metadata``), each item a reference needs
    checked before any work: CENTRES (a table of finite numbers, one row per segment), K (a whole number of
    segments that the centres match), FEATURES (what the centres were fitted on: as many names as each centre has
    values, a whole stride, input ranges of finite (low, high) pairs) and METHOD. Raises ``InputError`` naming
    the file, the item and what to do; returns the items with ``centres`` as a float64 array and ``k`` an int."""
    if "centres" not in items:
        raise InputError(f"The reference '{path}' has no segment centres in its metadata (SEGMENTER_CENTRES). "
                         f"{REFERENCE_ADVICE}")
    rows = items["centres"]
    if (not isinstance(rows, list) or not rows or not all(isinstance(row, list) and row for row in rows)
            or not all(_number(value) for row in rows for value in row)):
        raise _damaged(path, "CENTRES", "it is not a table of numbers (one row of numbers per segment)")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) != 1:
        raise _damaged(path, "CENTRES", f"its rows have different lengths ({', '.join(map(str, lengths))})")
    centres = np.asarray(rows, np.float64)
    bad = int(np.count_nonzero(~np.isfinite(centres)))
    if bad:
        raise _damaged(path, "CENTRES", f"{bad} of its {centres.size} values are not finite numbers (NaN or "
                                        f"infinity)")
    if "k" not in items:
        raise InputError(f"The reference '{path}' has no SEGMENTER_K item (its number of segments). "
                         f"{REFERENCE_ADVICE}")
    k = items["k"]
    if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_SEGMENTS):
        raise _damaged(path, "K", f"{k!r} is not a whole number of segments from 1 to {MAX_SEGMENTS}")
    if len(centres) != k:
        raise _damaged(path, "CENTRES", f"it holds {len(centres)} centres but SEGMENTER_K says {k} segments")
    features = items.get("features")
    if features is not None:
        if not isinstance(features, dict):
            raise _damaged(path, "FEATURES", "it is not a set of named values")
        names, stride, ranges = features.get("names"), features.get("stride"), features.get("input_ranges")
        if names is not None and (not isinstance(names, list) or len(names) != centres.shape[1]):
            count = len(names) if isinstance(names, list) else "no list of"
            raise _damaged(path, "FEATURES", f"it names {count} features, but each centre has "
                                             f"{centres.shape[1]} values")
        if stride is not None and not (isinstance(stride, int) and not isinstance(stride, bool) and stride >= 1):
            raise _damaged(path, "FEATURES", f"its stride {stride!r} is not a whole number of pixels")
        if ranges is not None and not (isinstance(ranges, list) and ranges and all(
                isinstance(pair, list) and len(pair) == 2 and all(map(_number, pair))
                and np.isfinite(pair).all() and pair[0] < pair[1] for pair in ranges)):
            raise _damaged(path, "FEATURES", "its input_ranges are not (low, high) pairs of finite numbers, low "
                                             "below high")
    method = items.get("method")
    if method is not None and not isinstance(method, str):
        raise _damaged(path, "METHOD", f"{method!r} is not the name of a method")
    return {**items, "centres": centres, "k": k}


_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def xml_attribute(text: str) -> str:
    """``text`` as a quoted XML attribute value, character for character what ``xml.sax.saxutils.quoteattr``
    writes. The plugin writes XML and never parses any: this avoids importing ``xml.sax`` only for escaping,
    an import the plugin repository's Bandit scan reports (B406)."""
    text = "".join(_XML_ESCAPES.get(character, character) for character in text)
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace('"', "&quot;") + '"'


STYLE_MARK = "<!-- map_segmenter:"
STYLE_COMMENT = (f"{STYLE_MARK} this style belongs to the raster beside it and is replaced when Map Segmenter "
                 f"writes that raster again. Save your own style under another name, or remove this line. -->")
_QML_HEAD = """<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
"""
_QML_TAIL = """
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""
_QML_ENTRY = re.compile(
    r'        <paletteEntry value="\d+" color="#[0-9a-f]{6}" alpha="255" label=(?:"[^"]*"|\'[^\']*\')/>')


def qml_text(segments: int, colours: Sequence[tuple] | None = None, names: Sequence[str] | None = None) -> str:
    """The ``.qml`` style (paletted renderer, one entry per segment), marked as written by Map Segmenter."""
    colours = colours or qualitative(segments)
    names = names or segment_names(segments)
    entries = "\n".join(
        f'        <paletteEntry value="{index}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" '
        f"label={xml_attribute(name)}/>"
        for index, ((r, g, b), name) in enumerate(zip(colours, names), start=1)
    )
    head, rest = _QML_HEAD.split("\n", 1)
    return f"{head}\n{STYLE_COMMENT}\n{rest}{entries}{_QML_TAIL}"


def is_our_style(path: str) -> bool:
    """Whether the .qml at ``path`` was written by Map Segmenter: it has our mark, or is exactly what versions
    before the mark wrote. A style the user saved there (QGIS rewrites the whole file) is not ours."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(4 * 2**20)
    except (OSError, UnicodeDecodeError):
        return False
    if STYLE_MARK in text:
        return True
    if not (text.startswith(_QML_HEAD) and text.endswith(_QML_TAIL)):
        return False
    entries = text[len(_QML_HEAD) : len(text) - len(_QML_TAIL)].split("\n")
    return all(_QML_ENTRY.fullmatch(entry) for entry in entries)


def write_qml(raster_path: str, segments: int, colours: Sequence[tuple] | None = None,
              names: Sequence[str] | None = None, group: CommitGroup | None = None) -> str | None:
    """The ``.qml`` sidecar that QGIS loads with the raster, written atomically; with a ``CommitGroup`` it is
    put in place with the group's other outputs. A .qml there that is not ours (a user's own style, an input's
    style) is left alone with a warning: returns None; else the path.

    Parameters
    ----------
    raster_path : str
        The label raster the style belongs to.
    segments : int
        K: one palette entry per id 1..K.
    colours : sequence of (r, g, b), optional
        The segments' colours; default the qualitative palette.
    names : sequence of str, optional
        The segments' names; default "Segment 1" ...
    group : CommitGroup, optional
        The group the style is committed with; None commits it here.

    Returns
    -------
    str or None
        The .qml's path, or None when a style that is not ours was left in place.

    Raises
    ------
    OutputError
        The style cannot be written.
    """
    text = qml_text(segments, colours, names).encode("utf-8")
    if group is None:
        with CommitGroup() as group:
            path = group.write_sidecar(raster_path, style_path(raster_path), text, is_our_style)
            group.commit()
        return path
    return group.write_sidecar(raster_path, style_path(raster_path), text, is_our_style)


def finish_label_raster(output: AtomicRaster, segments: int, metadata: dict[str, Any],
                        colours: Sequence[tuple] | None = None, names: Sequence[str] | None = None) -> str:
    """Style, tag and commit an ``AtomicRaster`` of labels, then write its ``.qml`` (both in the output's
    ``CommitGroup`` when it has one).

    Parameters
    ----------
    output : AtomicRaster
        The written label raster, not yet committed.
    segments : int
        K.
    metadata : dict
        SEGMENTER_* items to write besides K, names and version.
    colours, names : sequence, optional
        As ``write_qml`` takes them.

    Returns
    -------
    str
        The committed raster's path (where its group puts it).

    Raises
    ------
    OutputError
        The raster or its style cannot be written.
    """
    names = names or segment_names(segments)
    style_label_band(output.band(1), segments, colours)
    write_metadata(output.dataset, k=segments, names=names, version=VERSION, **metadata)
    path = output.commit()
    write_qml(path, segments, colours, names, group=output.group)
    return path


@dataclass
class LegendEntry:
    value: int
    colour: tuple
    name: str


def read_legend(path: str) -> list[LegendEntry] | None:
    """The K legend entries of a label raster (id, RGB colour, name) as written by Map Segmenter: K and names
    from its metadata, colours from its colour table (the qualitative palette where it has none).

    None when the raster is not a label raster of ours (no SEGMENTER_K), so callers leave it as it is.

    Parameters
    ----------
    path : str
        Any raster path; it is opened read-only and never raises.

    Returns
    -------
    list of LegendEntry or None
        One entry per id 1..K, or None.
    """
    try:
        dataset = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError:
        return None
    if dataset is None or dataset.RasterCount != 1:
        return None
    meta = LabelMeta.read(dataset)
    segments = meta.k
    if segments is None:
        return None
    names = meta.names_for(segments) or segment_names(segments)
    colours = table_colours(dataset.GetRasterBand(1), segments) or qualitative(segments)
    return [LegendEntry(index, colour, str(name))
            for index, (colour, name) in enumerate(zip(colours, names), start=1)]
