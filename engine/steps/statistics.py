"""Per-segment statistics of a label raster: a table of pixel counts, areas, shares and image colours, the
segments as polygons (GDAL's polygonize) and an HTML report with a bar chart.

Exact: counts are integer sums over every valid pixel; an area is the count times the pixel's area (for a
geographic CRS, the ellipsoidal area of each row's cells, summed by row); image means and standard deviations
are merged window by window with Chan's pairwise formula, so a tiled run equals an untiled one to the last
float digits. The raster is read in windows that fit MEMORY_MB; GDAL's polygonize streams by itself.
"""

from __future__ import annotations

import colorsys
import html
import math
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from osgeo import gdal, ogr

from .. import VERSION
from ..rasters.colour_tables import table_colours
from ..rasters.labels import LabelRaster, read_legend, xml_attribute
from ..rasters.palette import qualitative
from ..rasters.raster_io import GTIFF_OPTIONS, is_paletted, open_input, open_raster
from ..rasters.windows import plan_windows
from ..runtime import checks
from ..runtime.errors import Cancelled, InputError, OutputError
from ..runtime.memory import within_budget
from ..runtime.outputs import (
    GPKG_MARK,
    Destination,
    gpkg_layer_name,
    prepare_outputs,
    quote_identifier,
    quote_literal,
    temporary_path,
)
from ..runtime.params import IMAGE, INPUT, MEMORY_MB, OUTPUT, POLYGONS, REPORT, SIEVE
from ..runtime.progress import Progress
from .render import _same_grid
from .window_step import Executor, WindowStep

TABLE_FORMATS = {".gpkg": "GPKG", ".csv": "CSV"}
BYTES_PER_PIXEL = 32  # labels as read, their int64 row index, the validity mask, a compressed copy, row weights
BYTES_PER_IMAGE_BAND = 40  # the band as read, as float64, its deviations from the window's segment means


# -- areas -----------------------------------------------------------------------------------------------------


def authalic_q(latitude_radians, eccentricity_squared):
    """q(phi) of the authalic latitude: a cell between latitudes phi1 and phi2 and dlambda radians of longitude
    on an ellipsoid of semi-major axis a has the area a^2 / 2 * dlambda * (q(phi2) - q(phi1)) (Snyder 1987, 3-12)."""
    sine = np.sin(latitude_radians)
    e2 = eccentricity_squared
    if e2 < 1e-15:  # a sphere: the band from the equator to phi has the area 2 pi a^2 sin(phi)
        return 2.0 * sine
    e = math.sqrt(e2)
    return (1.0 - e2) * (sine / (1.0 - e2 * sine * sine) - np.log((1.0 - e * sine) / (1.0 + e * sine)) / (2.0 * e))


@dataclass
class AreaModel:
    """How pixel counts become areas on one raster's grid and CRS.

    ``fields``: (name, factor) of the area columns, each ``factor`` times the base area; the first is the polygon
    layer's area field. ``pixel_area``: base area of one pixel (None on a geographic grid, where ``row_areas``
    gives the area of one pixel in each row). ``method``: one sentence for the report."""

    fields: list
    method: str
    pixel_area: float | None = None
    row_areas: np.ndarray | None = None
    semi_major: float = 0.0
    eccentricity_squared: float = 0.0
    radians_per_unit: float = 0.0

    @property
    def geographic(self):
        return self.row_areas is not None

    def ring_area(self, points):
        """Ellipsoidal area (m²) enclosed by a ring of (longitude, latitude) ``points`` in the CRS's angular unit.

        The integral of the area per radian of longitude from the equator, a^2/2 q(phi), along the ring: exact for
        the edges of a polygonized grid (meridians and parallels), Simpson's rule along any other edge."""
        xy = np.asarray(points, np.float64)[:, :2] * self.radians_per_unit
        lon, lat = xy[:, 0], np.clip(xy[:, 1], -math.pi / 2, math.pi / 2)
        q = authalic_q(lat, self.eccentricity_squared)
        q_mid = authalic_q((lat[:-1] + lat[1:]) / 2.0, self.eccentricity_squared)
        along = (q[:-1] + 4.0 * q_mid + q[1:]) / 6.0
        return abs(float(np.sum(along * np.diff(lon)))) * self.semi_major**2 / 2.0

    def polygon_area(self, geometry):
        if not self.geographic:
            return geometry.GetArea() * self.fields[0][1]
        total = 0.0
        for part in _polygons(geometry):
            for index in range(part.GetGeometryCount()):
                ring = self.ring_area(part.GetGeometryRef(index).GetPoints())
                total += ring if index == 0 else -ring
        return total


def _polygons(geometry):
    if geometry.GetGeometryType() in (ogr.wkbPolygon, ogr.wkbPolygon25D):
        return [geometry]
    return [geometry.GetGeometryRef(index) for index in range(geometry.GetGeometryCount())]


def _metric(prefix, suffix, first_factor=1.0):
    return [(f"{prefix}m2{suffix}", first_factor), (f"{prefix}ha{suffix}", first_factor * 1e-4),
            (f"{prefix}km2{suffix}", first_factor * 1e-6)]


def area_model(dataset, path):
    """The AreaModel of a raster: projected (metres or another linear unit), geographic (ellipsoidal) or bare
    pixel/map units (no CRS)."""
    geotransform = dataset.GetGeoTransform(can_return_null=True)
    srs = dataset.GetSpatialRef()
    if geotransform is None:
        return AreaModel([("area_map_units2", 1.0)], "The raster has no georeferencing: areas are in pixels.",
                         pixel_area=1.0)
    x0, dx, rx, y0, ry, dy = geotransform
    pixel_area = abs(dx * dy - rx * ry)
    if srs is None or not (srs.IsProjected() or srs.IsGeographic()):
        return AreaModel([("area_map_units2", 1.0)], "The raster has no CRS: areas are in map units².",
                         pixel_area=pixel_area)
    name = srs.GetName() or "unnamed CRS"
    if srs.IsProjected():
        metres = srs.GetLinearUnits()
        unit = srs.GetLinearUnitsName() or "map unit"
        if abs(metres - 1.0) < 1e-12:
            return AreaModel(_metric("area_", ""), f"Projected CRS {name} in metres: the area of a segment is its "
                             f"pixel count times the pixel's area ({pixel_area:.6g} m²).", pixel_area=pixel_area)
        return AreaModel([("area_map_units2", 1.0), *_metric("area_", "", metres**2)],
                         f"Projected CRS {name} in {unit} ({metres:.12g} m): the area of a segment is its pixel count "
                         f"times the pixel's area ({pixel_area:.6g} {unit}²), converted to m², ha and km².",
                         pixel_area=pixel_area)
    if rx != 0.0 or ry != 0.0:
        raise InputError(
            f"The label raster '{path}' is on a rotated geographic grid; ellipsoidal areas need a north-up grid. "
            f"Warp it north-up first (Raster > Projections > Warp)."
        )
    semi_major = srs.GetSemiMajor()
    inverse_flattening = srs.GetInvFlattening()
    flattening = 1.0 / inverse_flattening if inverse_flattening else 0.0
    e2 = 2.0 * flattening - flattening * flattening
    radians = srs.GetAngularUnits()
    rows = np.arange(dataset.RasterYSize + 1, dtype=np.float64)
    latitudes = np.clip((y0 + rows * dy) * radians, -math.pi / 2, math.pi / 2)
    q = authalic_q(latitudes, e2)
    row_areas = np.abs(np.diff(q)) * abs(dx * radians) * semi_major**2 / 2.0
    model = AreaModel(
        _metric("area_", "_ellipsoidal"),
        f"Geographic CRS {name}: areas on its ellipsoid (a = {semi_major:.3f} m, 1/f = {inverse_flattening:.9g}); "
        f"every pixel of a row has the same area, computed exactly through the authalic latitude, and a "
        f"segment's area is the sum over rows of its pixel count times that row's pixel area.",
        row_areas=row_areas, semi_major=semi_major, eccentricity_squared=e2, radians_per_unit=radians)
    return model


# -- the counting pass -------------------------------------------------------------------------------------------


class _Bins:
    """Accumulator rows for segment values: directly by value for 8- and 16-bit ids, through a growing lookup
    (np.unique per window) for wider integers."""

    def __init__(self, dtype):
        info = np.iinfo(dtype)
        self.direct = info.bits <= 16
        self.offset = int(info.min)
        self.size = 2**info.bits if self.direct else 0
        self.lookup = {}

    def rows(self, values):
        """Direct bins: the rows of ``values``."""
        return values.astype(np.intp) - self.offset if self.offset else values

    def add(self, values):
        """Lookup bins: the rows of ``values`` (unique, ascending), new values given new rows in this order."""
        for value in values.tolist():
            self.lookup.setdefault(value, len(self.lookup))
        self.size = len(self.lookup)
        return np.array([self.lookup[value] for value in values.tolist()], np.intp)

    def values(self):
        if self.direct:
            return np.arange(self.size, dtype=np.int64) + self.offset
        values = np.empty(self.size, np.int64)
        for value, row in self.lookup.items():
            values[row] = value
        return values

    def row_of(self, value):
        if self.direct:
            row = int(value) - self.offset
            return row if 0 <= row < self.size else None
        return self.lookup.get(int(value))


def _grown(array, size):
    if array.shape[-1] >= size:
        return array
    grown = np.zeros(array.shape[:-1] + (size,), array.dtype)
    grown[..., : array.shape[-1]] = array
    return grown


@dataclass
class _Tally:
    bins: _Bins
    bands: int
    counts: np.ndarray = None
    areas: np.ndarray = None  # per segment, geographic grids only
    colour_counts: np.ndarray = None
    means: np.ndarray = None
    m2: np.ndarray = None

    def __post_init__(self):
        size = self.bins.size
        self.counts = np.zeros(size, np.int64)
        self.areas = np.zeros(size)
        self.colour_counts = np.zeros(size, np.int64)
        self.means = np.zeros((self.bands, size))
        self.m2 = np.zeros((self.bands, size))

    def grow(self):
        size = self.bins.size
        self.counts, self.areas = _grown(self.counts, size), _grown(self.areas, size)
        self.colour_counts = _grown(self.colour_counts, size)
        self.means, self.m2 = _grown(self.means, size), _grown(self.m2, size)

    def add(self, rows, window):
        """Merge a ``_WindowTally`` whose local rows are the tally's ``rows`` (a slice for direct bins)."""
        self.grow()
        size = self.bins.size

        def full(values, dtype=np.float64):  # local rows -> every row of the tally (0 where the window has none)
            if isinstance(rows, slice):
                return values
            spread = np.zeros(values.shape[:-1] + (size,), dtype)
            spread[..., rows] = values
            return spread

        self.counts += full(window.counts, np.int64)
        if window.areas is not None:
            self.areas += full(window.areas)
        if window.colour_counts is None:
            return
        counts = full(window.colour_counts, np.int64)
        seen = counts > 0
        total = self.colour_counts + counts
        for band, (sums, window_m2) in enumerate(zip(full(window.sums), full(window.m2))):
            # Chan et al.: merge the window's per-segment count, mean and sum of squared deviations
            window_mean = np.divide(sums, counts, out=np.zeros(size), where=seen)
            delta = window_mean - self.means[band]
            share = np.divide(counts, total, out=np.zeros(size), where=total > 0)
            self.means[band] += delta * share
            self.m2[band] += window_m2 + delta * delta * self.colour_counts * share
        self.colour_counts = total


@dataclass
class _WindowTally:
    """One window's counts per local row (``values``: the ids of the rows; None: rows are the ids' direct bins)."""

    values: np.ndarray | None
    counts: np.ndarray
    areas: np.ndarray | None = None
    colour_counts: np.ndarray | None = None
    sums: np.ndarray | None = None  # (bands, rows)
    m2: np.ndarray | None = None  # (bands, rows): sums of squared deviations from the window's means


def _validity(band):
    """(nodata value or None, mask band to read or None): what makes a label pixel nodata."""
    flags = band.GetMaskFlags()
    nodata = band.GetNoDataValue()
    if nodata is not None and not np.isfinite(nodata):
        nodata = None
    mask = None if flags & (gdal.GMF_ALL_VALID | gdal.GMF_NODATA) else band.GetMaskBand()
    return nodata, mask


class _CountInputs:
    """The labels (their validity and area model) and the IMAGE a count reads."""

    def __init__(self, labels, image, model):
        self.labels, self.image, self.model = labels, image, model
        self.nodata, self.mask = _validity(labels.band)
        self.dtype = labels.band.ReadAsArray(0, 0, 1, 1).dtype

    def close(self):
        self.labels.close()


@dataclass(frozen=True)
class CountStep(WindowStep):
    """A window's ``_WindowTally``: pixels (and areas on geographic grids) per id, and the IMAGE bands' means and
    squared deviations per id."""

    labels_path: str
    image_path: str | None
    fast: bool  # 8/16-bit ids, no mask, no IMAGE, projected: every pixel counted, nodata's bin dropped at the end

    stage: ClassVar[str] = "Counting segment pixels"
    workers: ClassVar[int] = 1  # counting is light next to reading: here, one window at a time (as planned)
    overlap: ClassVar[bool] = False

    @property
    def paths(self):
        return (self.labels_path, self.image_path) if self.image_path else (self.labels_path,)

    def open(self):
        labels = LabelRaster.open(self.labels_path)
        image = _open_image(self.image_path, labels.dataset, self.labels_path)[0] if self.image_path else None
        return _CountInputs(labels, image, area_model(labels.dataset, self.labels_path))

    def read(self, inputs, window):
        ids = inputs.labels.band.ReadAsArray(*window.box)
        valid = None if inputs.mask is None else inputs.mask.ReadAsArray(*window.box) > 0
        pixels = image_valid = areas = None
        if inputs.image is not None:
            pixels = inputs.image.read(window)
            image_valid = inputs.image.read_valid(window, pixels)
            inputs.image.release_cache()
        if inputs.model.geographic:
            areas = inputs.model.row_areas[window.yoff : window.yoff + window.height]
        inputs.labels.dataset.FlushCache()
        return ids, valid, pixels, image_valid, areas, inputs.nodata

    def compute(self, window, ids, valid, pixels, image_valid, areas, nodata, tick=None):
        bins = _Bins(ids.dtype)
        if self.fast:
            return _WindowTally(None, np.bincount(bins.rows(ids.ravel()), minlength=bins.size)[: bins.size])
        keep = np.ones(ids.shape, bool) if nodata is None else ids != nodata
        if valid is not None:
            keep &= valid
        values, rows, size = None, None, bins.size
        if bins.direct:
            rows = bins.rows(ids[keep])
        else:
            values, rows = np.unique(ids[keep], return_inverse=True)
            rows, size = rows.ravel(), len(values)
        tally = _WindowTally(values, np.bincount(rows, minlength=size)[:size])
        if areas is not None:
            weights = np.broadcast_to(areas[:, None], ids.shape)[keep]
            tally.areas = np.bincount(rows, weights, minlength=size)[:size]
        if pixels is not None:
            if image_valid is not None:
                rows = rows[image_valid[keep]]
            bands = [p[keep] if image_valid is None else p[keep][image_valid[keep]] for p in pixels]
            _colour_moments(tally, rows, [band.astype(np.float64) for band in bands], size)
        return tally


def _colour_moments(tally, rows, bands, size):
    """Count, sums and sums of squared deviations from the window's means, per row, of each band."""
    counts = np.bincount(rows, minlength=size)[:size]
    seen = counts > 0
    tally.colour_counts = counts
    tally.sums, tally.m2 = np.zeros((len(bands), size)), np.zeros((len(bands), size))
    for band, values in enumerate(bands):
        tally.sums[band] = np.bincount(rows, values, minlength=size)[:size]
        window_mean = np.divide(tally.sums[band], counts, out=np.zeros(size), where=seen)
        deviations = values - window_mean[rows]
        tally.m2[band] = np.bincount(rows, deviations * deviations, minlength=size)[:size]


def _count(executor, inputs, windows):
    """Every window's tally merged in window order (the same sums whatever the threads or workers)."""
    bins = _Bins(inputs.dtype)
    tally = _Tally(bins, len(inputs.image.bands) if inputs.image is not None else 0)
    fast = bins.direct and inputs.image is None and inputs.mask is None and not inputs.model.geographic
    step = CountStep(inputs.labels.path, inputs.image.path if inputs.image is not None else None, fast)
    for _, window in executor.map(step, windows, inputs):
        tally.add(slice(None) if window.values is None else bins.add(window.values), window)
    if fast and inputs.nodata is not None and float(inputs.nodata).is_integer():
        row = bins.row_of(inputs.nodata)
        if row is not None:
            tally.counts[row] = 0
    return tally


# -- results -----------------------------------------------------------------------------------------------------


@dataclass
class Segment:
    value: int
    name: str
    colour: tuple
    pixels: int
    area: float  # base unit of the area model
    share: float  # % of the valid area
    means: list = field(default_factory=list)
    stds: list = field(default_factory=list)

    @property
    def hex_colour(self):
        return "#{:02x}{:02x}{:02x}".format(*self.colour)


@dataclass
class StatisticsResult:
    output: str
    polygons: str | None
    report: str | None
    segments: list  # Segment, by value
    area_fields: list
    band_names: list
    method: str
    polygon_count: int = 0
    windows: int = 0  # windows the labels were counted in (MEMORY_MB)
    output_layer: str | None = None  # the layers written in a GeoPackage
    polygons_layer: str | None = None
    criterion: dict | None = None  # SEGMENTER_CRITERION of a run with SEGMENTS = 0 (engine/segmentation/hierarchy.py)


def _legend(dataset, band, path, values):
    """Colour and name of each segment value: ours from the label raster's metadata and colour table; another
    raster's from its category names and colour table where it has them."""
    ours = {entry.value: entry for entry in read_legend(path) or []}
    categories = band.GetCategoryNames() or []
    spare = qualitative(len(values))
    legend = []
    for index, value in enumerate(values):
        if value in ours:
            legend.append((tuple(ours[value].colour), ours[value].name))
            continue
        colour = (table_colours(band, [value]) or [spare[index]])[0]
        name = categories[value] if 0 <= value < len(categories) and categories[value] else f"Segment {value}"
        legend.append((colour, name))
    return legend


def _segments(tally, model, dataset, band, path):
    counts = tally.counts
    present = np.flatnonzero(counts)
    values = tally.bins.values()[present]
    order = np.argsort(values, kind="stable")
    present, values = present[order], values[order]
    if model.geographic:
        areas = tally.areas[present]
    else:
        areas = counts[present] * model.pixel_area
    total = float(areas.sum())
    legend = _legend(dataset, band, path, values.tolist())
    segments = []
    for index, row in enumerate(present.tolist()):
        colour, name = legend[index]
        has_colour = tally.colour_counts[row] > 0 if tally.bands else False
        means = [float(tally.means[b, row]) if has_colour else None for b in range(tally.bands)]
        stds = [math.sqrt(max(tally.m2[b, row], 0.0) / tally.colour_counts[row]) if has_colour else None
                for b in range(tally.bands)]
        segments.append(Segment(int(values[index]), name, colour, int(counts[row]), float(areas[index]),
                                100.0 * float(areas[index]) / total if total else 0.0, means, stds))
    return segments


# -- writing -----------------------------------------------------------------------------------------------------


def _remove(*paths):
    for path in paths:
        if path and os.path.exists(path):
            os.remove(path)


TABLE_MARK = f"{GPKG_MARK}: segment statistics"
POLYGONS_MARK = f"{GPKG_MARK}: segment polygons"
STYLE_DESCRIPTION = "Segment colours and names (Map Segmenter)"


def _copy_geopackage(path, temp):
    """A consistent copy of the GeoPackage ``path`` (its -wal included) at ``temp``: SQLite's backup."""
    try:
        source = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(temp)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as error:
        raise OutputError(f"Cannot read the GeoPackage '{path}' to add a layer to it ({error}).") from None


class _Files:
    """The run's files in its ``CommitGroup``, under temporary names beside their destinations, put in place together
    once all of them are complete: a failed, cancelled or killed run leaves every destination as it was (and the next
    run's ``prepare_outputs`` removes what a killed one left).

    A GeoPackage that exists gets our layer beside the user's: a copy of it is written (our same-named layer and
    its style dropped from it; ``prepare_outputs`` refused a same-named layer of the user's) and replaces it at
    commit. Two outputs in one GeoPackage share the copy."""

    def __init__(self, group):
        self.group = group
        self.files = []  # (temporary path, destination), in the order they were made

    def temporary(self, path, suffix, temp=None):
        temp = self.group.temporary(path, suffix, temp)
        self.files.append((temp, path))
        return temp

    def geopackage(self, path, layer):
        """The temporary GeoPackage for ``path``, opened for update, ``layer`` free in it."""
        temp = next((temp for temp, destination in self.files
                     if os.path.realpath(destination) == os.path.realpath(path)), None)
        if temp is None:
            temp = self.temporary(path, ".gpkg")
            if os.path.exists(path):
                _copy_geopackage(path, temp)
            else:
                dataset = ogr.GetDriverByName("GPKG").CreateDataSource(temp)
                if dataset is None:
                    raise OutputError(f"Cannot create '{path}'. Choose a folder you can write to.")
                return dataset
        dataset = ogr.Open(temp, update=1)
        for index in range(dataset.GetLayerCount()):
            if dataset.GetLayer(index).GetName().lower() == layer.lower():
                dataset.DeleteLayer(index)
                break
        if dataset.GetLayerByName("layer_styles") is not None:
            # Bandit B608 does not apply: OGR's ExecuteSQL takes no bound parameters; both values are quote_literal()
            delete = (f"DELETE FROM layer_styles WHERE lower(f_table_name) = lower({quote_literal(layer)}) "  # nosec B608
                      f"AND description = {quote_literal(STYLE_DESCRIPTION)}")
            dataset.ExecuteSQL(delete)
        return dataset

    def commit(self):
        for temp, path in self.files:
            self.group.stage(temp, path)
        self.group.commit()


def _table_format(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in TABLE_FORMATS:
        raise OutputError(
            f"The statistics table '{path}' must be a GeoPackage (.gpkg) or a CSV file (.csv); got "
            f"'{extension or 'no extension'}'."
        )
    return TABLE_FORMATS[extension]


def _field_names(result):
    names = ["segment", "name", "colour", "pixels", *[name for name, _ in result.area_fields], "share_pct"]
    for band in result.band_names:
        names += [f"{band}_mean", f"{band}_std"]
    return names


def _record(segment, result):
    values = [segment.value, segment.name, segment.hex_colour, segment.pixels,
              *[segment.area * factor for _, factor in result.area_fields], segment.share]
    for mean, std in zip(segment.means, segment.stds):
        values += [mean, std]
    return values


def write_table(result, path, files, layer_name=None):
    """The table (a layer of a GeoPackage, or CSV with its .csvt of column types; no geometry)."""
    driver_name = _table_format(path)
    try:
        if driver_name == "CSV":
            temp = files.temporary(path, ".csv")
            csvt = os.path.splitext(path)[0] + ".csvt"
            files.temporary(csvt, ".csvt", os.path.splitext(temp)[0] + ".csvt")
            dataset = ogr.GetDriverByName(driver_name).CreateDataSource(temp)
            if dataset is None:
                raise OutputError(f"Cannot create '{path}'. Choose a folder you can write to.")
            options = ["CREATE_CSVT=YES"]  # QGIS reads the column types from it
        else:
            dataset = files.geopackage(path, gpkg_layer_name(path, layer_name))
            options = [f"DESCRIPTION={TABLE_MARK}"]
        layer = dataset.CreateLayer(gpkg_layer_name(path, layer_name), None, ogr.wkbNone, options)
        kinds = [ogr.OFTInteger64, ogr.OFTString, ogr.OFTString, ogr.OFTInteger64]
        names = _field_names(result)
        kinds += [ogr.OFTReal] * (len(names) - len(kinds))
        for name, kind in zip(names, kinds):
            layer.CreateField(ogr.FieldDefn(name, kind))
        transactions = dataset.TestCapability(ogr.ODsCTransactions)  # GeoPackage yes, CSV no
        if transactions:
            dataset.StartTransaction()
        for segment in result.segments:
            feature = ogr.Feature(layer.GetLayerDefn())
            for index, value in enumerate(_record(segment, result)):
                if value is not None:
                    feature.SetField(index, value)
            layer.CreateFeature(feature)
        if transactions:
            dataset.CommitTransaction()
        dataset = layer = None
    except RuntimeError as error:
        raise OutputError(f"Cannot write '{path}' ({error}). Choose a folder you can write to.") from None
    return path


def _gdal_progress(progress, message):
    """A GDAL progress callback feeding ``progress``; it asks GDAL to stop when the user cancels."""
    state = {"cancelled": False}

    def callback(complete, _message, _data):
        try:
            progress.update(complete, message)
        except Cancelled:
            state["cancelled"] = True
            return 0
        return 1

    return callback, state


def _run_gdal(function, progress, message, *arguments):
    callback, state = _gdal_progress(progress, message)
    try:
        function(*arguments, callback=callback)
    except RuntimeError:
        if state["cancelled"]:
            raise Cancelled() from None
        raise
    if state["cancelled"]:
        raise Cancelled()


def write_polygons(dataset, band, path, result, model, sieve, progress, files, layer_name=None):
    """The segments as polygons (a GeoPackage layer, the raster's CRS) with segment, name and area; optionally
    the regions smaller than ``sieve`` pixels merged into their largest neighbour first (gdal.SieveFilter)."""
    sieved_path = temporary_path(path, ".tif") if sieve else None
    area_field = model.fields[0][0]
    output = layer = source = sieved = None
    try:
        source, mask = band, band.GetMaskBand()
        if sieve:
            progress.start("Sieving")
            sieved = gdal.GetDriverByName("GTiff").Create(
                sieved_path, dataset.RasterXSize, dataset.RasterYSize, 1, band.DataType, GTIFF_OPTIONS)
            sieved.SetGeoTransform(dataset.GetGeoTransform())
            sieved.SetProjection(dataset.GetProjection())
            _run_gdal(gdal.SieveFilter, progress, "Merging small regions", band, mask, sieved.GetRasterBand(1),
                      sieve, 4)
            source = sieved.GetRasterBand(1)
        progress.start("Polygonizing")
        name = gpkg_layer_name(path, layer_name)
        output = files.geopackage(path, name)
        srs = dataset.GetSpatialRef()
        layer = output.CreateLayer(name, srs, ogr.wkbPolygon, ["FID=fid", "GEOMETRY_NAME=geom",
                                                               f"DESCRIPTION={POLYGONS_MARK}"])
        wide = band.DataType not in (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16)
        layer.CreateField(ogr.FieldDefn("segment", ogr.OFTInteger64 if wide else ogr.OFTInteger))
        layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
        layer.CreateField(ogr.FieldDefn(area_field, ogr.OFTReal))
        # one transaction: outside one, SQLite commits (and syncs) every polygon on its own, which made polygonizing
        # into an existing GeoPackage (a rerun to the same POLYGONS) 12x slower than into a new one
        output.StartTransaction()
        _run_gdal(gdal.Polygonize, progress, "Polygonizing", source, mask, layer, 0, [])
        output.CommitTransaction()
        progress.start("Measuring polygons")
        _fill_polygon_attributes(output, layer, name, result, model, area_field, progress)
        count = layer.GetFeatureCount()
        _store_default_style(output, name, result.segments)
        output = layer = source = None
    except RuntimeError as error:
        raise OutputError(f"Cannot write the polygons '{path}' ({error}).") from None
    finally:  # closed before a cancel removes the temporary file: GDAL finishes a GeoPackage when it closes it
        output = layer = source = sieved = None
        _remove(sieved_path)
    return count


def outline_colour(colour):
    """The outline of a segment polygon: its fill colour a little darker (HSV value / 1.4, like QColor.darker(140))."""
    hue, saturation, value = colorsys.rgb_to_hsv(*(channel / 255.0 for channel in colour))
    return tuple(int(round(channel * 255)) for channel in colorsys.hsv_to_rgb(hue, saturation, value / 1.4))


def polygon_style_qml(segments, field_name="segment"):
    """A QGIS style (QML) for segment polygons: a categorised renderer on ``field_name``, one category per segment
    filled with its colour and named like it."""
    categories, symbols = [], []
    for index, segment in enumerate(segments):
        categories.append(f'   <category value="{segment.value}" label={xml_attribute(segment.name)} render="true" '
                          f'symbol="{index}"/>')
        properties = {"color": "{},{},{},255".format(*segment.colour),
                      "outline_color": "{},{},{},255".format(*outline_colour(segment.colour)),
                      "outline_style": "solid", "outline_width": "0.1", "outline_width_unit": "MM", "style": "solid"}
        options = "".join(f'<Option value="{v}" type="QString" name="{k}"/>' for k, v in properties.items())
        props = "".join(f'<prop v="{v}" k="{k}"/>' for k, v in properties.items())  # what QGIS < 3.20 reads
        symbols.append(f'   <symbol force_rhr="0" clip_to_extent="1" alpha="1" type="fill" name="{index}">'
                       f'<layer class="SimpleFill" enabled="1" pass="0" locked="0"><Option type="Map">{options}'
                       f"</Option>{props}</layer></symbol>")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology">\n'
        f' <renderer-v2 attr="{field_name}" symbollevels="0" type="categorizedSymbol" enableorderby="0" '
        'forceraster="0">\n  <categories>\n' + "\n".join(categories) + "\n  </categories>\n  <symbols>\n"
        + "\n".join(symbols) + "\n  </symbols>\n </renderer-v2>\n</qgis>\n"
    )


def _store_default_style(output, layer_name, segments):
    """The style in the GeoPackage's layer_styles table, where QGIS looks for a layer's default style: the
    polygons open coloured and named however they are added (Browser, drag and drop, Add Vector Layer)."""
    styles = output.GetLayerByName("layer_styles")  # the GeoPackage's, when it has styles of its own
    if styles is None:
        styles = output.CreateLayer("layer_styles", None, ogr.wkbNone)
        text_fields = ("f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column", "styleName",
                       "styleQML", "styleSLD")
        for name in text_fields:
            styles.CreateField(ogr.FieldDefn(name, ogr.OFTString))
        default = ogr.FieldDefn("useAsDefault", ogr.OFTInteger)
        default.SetSubType(ogr.OFSTBoolean)
        styles.CreateField(default)
        for name in ("description", "owner", "ui"):
            styles.CreateField(ogr.FieldDefn(name, ogr.OFTString))
        styles.CreateField(ogr.FieldDefn("update_time", ogr.OFTDateTime))
    feature = ogr.Feature(styles.GetLayerDefn())
    values = {"f_table_catalog": "", "f_table_schema": "", "f_table_name": layer_name, "f_geometry_column": "geom",
              "styleName": layer_name, "styleQML": polygon_style_qml(segments), "styleSLD": "", "useAsDefault": 1,
              "description": STYLE_DESCRIPTION, "owner": ""}
    for name, value in values.items():
        if feature.GetFieldIndex(name) >= 0:
            feature.SetField(name, value)
    styles.CreateFeature(feature)


def _fill_polygon_attributes(output, layer, name, result, model, area_field, progress):
    """Names by SQL (a CASE per 200 segments); areas by SQL (SpatiaLite's ST_Area) where GDAL has it and the
    CRS is not geographic, else feature by feature."""
    # Bandit B608 (SQL built from strings) does not apply to these two statements: OGR's ExecuteSQL takes no
    # bound parameters, and every part is quoted or a number: table and column names by quote_identifier() (the
    # layer is named after the output file: any character may occur), segment names by quote_literal(), ids are
    # integers and the area factor a float's repr.
    table = quote_identifier(name)
    segments = result.segments
    for start in range(0, len(segments), 200):
        chunk = segments[start : start + 200]
        cases = " ".join(f"WHEN {s.value} THEN {quote_literal(s.name)}" for s in chunk)
        values = ", ".join(str(s.value) for s in chunk)
        names = f"UPDATE {table} SET name = CASE segment {cases} END WHERE segment IN ({values})"  # nosec B608
        output.ExecuteSQL(names)
    progress.update(0.1)
    if not model.geographic:
        try:
            factor = model.fields[0][1]
            area = f"UPDATE {table} SET {quote_identifier(area_field)} = ST_Area(geom) * {factor!r}"  # nosec B608
            output.ExecuteSQL(area)
            return
        except RuntimeError:
            pass  # no SpatiaLite in this GDAL: measure in Python
    total = max(layer.GetFeatureCount(), 1)
    output.StartTransaction()
    layer.ResetReading()
    for number, feature in enumerate(layer):
        feature.SetField(area_field, model.polygon_area(feature.GetGeometryRef()))
        layer.SetFeature(feature)
        if number % 4096 == 0:
            progress.update(0.1 + 0.9 * number / total)
    output.CommitTransaction()


def _unit_label(field_name):
    """'area_ha_ellipsoidal' -> 'ha (ellipsoidal)'."""
    unit = field_name[len("area_"):]
    suffix = ""
    if unit.endswith("_ellipsoidal"):
        unit, suffix = unit[: -len("_ellipsoidal")], " (ellipsoidal)"
    return {"m2": "m²", "km2": "km²", "map_units2": "map units²"}.get(unit, unit) + suffix


def _number(value, digits=2):
    """Two decimals (``digits``) with thousands separators; four significant digits below 1, so that 0.0034 km²
    does not read 0.00."""
    if value is None:
        return ""
    if value != 0 and abs(value) < 1:
        return f"{value:.4g}"
    return f"{value:,.{digits}f}"


def criterion_chart(criterion):
    """The automatic choice of K as a bar chart in the style of the area chart: per K, the share of the variance
    merging K segments into K - 1 loses; the chosen K's bar dark, the threshold a dashed line. "" when the items are
    not a criterion this version wrote."""
    try:
        values = [(int(k), float(value)) for k, value in criterion["values"]]
        chosen, threshold = int(criterion["k"]), float(criterion["threshold"])
    except (TypeError, KeyError, ValueError):
        return ""
    if not values:
        return ""
    bar_height, label_width, bar_width = 22, 220, 420
    largest = max(max(value for _, value in values), threshold) or 1.0
    x = label_width + bar_width * threshold / largest
    rows = []
    for index, (k, value) in enumerate(values):
        y = index * (bar_height + 6)
        width = max(1.0, bar_width * value / largest)
        # a value whose bar ends short of the threshold is written right of its dashed line, not across it
        text_x = max(label_width + width, x) + 6
        rows.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">K = {k}{" (chosen)" if k == chosen else ""}'
            f'</text><rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar_height}" '
            f'fill="{"#2b6cb0" if k == chosen else "#bcd2ea"}" stroke="#333" stroke-width="0.5"/>'
            f'<text x="{text_x:.1f}" y="{y + 16}">{100 * value:.1f} %</text>')
    height = len(values) * (bar_height + 6)
    rows.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#c53030" stroke-dasharray="4 3"/>')
    return (f'<h3>How K was chosen</h3>\n<p>Share of the variance lost by merging K segments into K - 1 (Ward\'s '
            f'linkage of {values[-1][0]} centres); K is the most segments whose next merge still loses at least '
            f'{100 * threshold:g} % (dashed line): K = {chosen}.</p>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + 200}" height="{height}" '
            f'font-family="sans-serif" font-size="12">{"".join(rows)}</svg>')


def report_html(result, title):
    """An HTML page: a bar chart of each segment's area in its colour (inline SVG), then the table; for a run with
    SEGMENTS = 0, the chart of its criterion (``criterion_chart``)."""
    fields = _field_names(result)
    unit_name, unit_factor = result.area_fields[0]
    largest = max((s.area for s in result.segments), default=0.0)
    metric = [(name, factor) for name, factor in result.area_fields if not name.startswith("area_map")]
    if metric:  # m², ha and km², in this order: ha from 1 ha, km² from 100 km²
        square_metres, hectares, square_kilometres = metric
        unit_name, unit_factor = (square_kilometres if largest * square_kilometres[1] >= 100 else
                                  hectares if largest * hectares[1] >= 1 else square_metres)
    unit = _unit_label(unit_name)
    largest = max((s.area * unit_factor for s in result.segments), default=0.0) or 1.0
    bar_height, label_width, bar_width = 22, 220, 420
    rows = []
    for index, segment in enumerate(result.segments):
        y = index * (bar_height + 6)
        value = segment.area * unit_factor
        width = max(1.0, bar_width * value / largest)
        rows.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{html.escape(segment.name)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar_height}" '
            f'fill="{segment.hex_colour}" stroke="#333" stroke-width="0.5"/>'
            f'<text x="{label_width + width + 6:.1f}" y="{y + 16}">{_number(value)} {html.escape(unit)} '
            f"({segment.share:.1f} %)</text>")
    height = max(1, len(result.segments)) * (bar_height + 6)
    chart = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + 200}" height="{height}" '
             f'font-family="sans-serif" font-size="12">{"".join(rows)}</svg>')
    header = "".join(f"<th>{html.escape(name)}</th>" for name in fields)
    body = []
    for segment in result.segments:
        cells = []
        for name, value in zip(fields, _record(segment, result)):
            if name == "colour":
                cells.append(f'<td><span style="background:{value}">&nbsp;&nbsp;&nbsp;&nbsp;</span> {value}</td>')
            elif isinstance(value, float) or value is None:
                cells.append(f'<td class="n">{_number(value, 4 if name.endswith("_pct") else 2)}</td>')
            elif isinstance(value, int):
                cells.append(f'<td class="n">{value if name == "segment" else format(value, ",")}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    total_pixels = sum(s.pixels for s in result.segments)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #bbb;padding:2px 6px}}
td.n{{text-align:right}}</style></head>
<body>
<h2>{html.escape(title)}</h2>
<p>{len(result.segments)} segments, {total_pixels:,} valid pixels (nodata excluded). {html.escape(result.method)}</p>
<h3>Area per segment</h3>
{chart}
{criterion_chart(result.criterion) if result.criterion else ""}
<h3>Table</h3>
<table><tr>{header}</tr>
{chr(10).join(body)}
</table>
<p>Map Segmenter {VERSION}, segmenter:statistics. Means and standard deviations (population) of the image bands
over each segment's valid pixels.</p>
</body></html>
"""


def write_report(result, path, title, files):
    try:
        with open(files.temporary(path, ".html"), "w", encoding="utf-8") as handle:
            handle.write(report_html(result, title))
    except OSError as error:
        raise OutputError(f"Cannot write the report '{path}' ({error.strerror}).") from None
    return path


# -- the step ----------------------------------------------------------------------------------------------------


def _open_image(path, labels, labels_path):
    """The IMAGE's bands to measure: every band but alpha (an alpha band is validity); a paletted image's colours."""
    dataset = open_raster(path, purpose="IMAGE raster")
    _same_grid(labels, dataset, labels_path, path)
    if is_paletted(dataset):
        return open_input(path), ["red", "green", "blue"]
    bands = [index for index in range(1, dataset.RasterCount + 1)
             if dataset.GetRasterBand(index).GetColorInterpretation() != gdal.GCI_AlphaBand]
    return open_input(path, bands), [f"band{index}" for index in bands]


def _check_destinations(input_path, output_path, image_path, polygons_path, report_path, output_layer,
                        polygons_layer, progress):
    """The formats the step writes, then ``prepare_outputs``: the run's ``CommitGroup``."""
    _table_format(output_path)
    if polygons_path and os.path.splitext(polygons_path)[1].lower() != ".gpkg":
        raise OutputError(f"The polygons '{polygons_path}' are written as a GeoPackage: give a .gpkg file.")
    return prepare_outputs({INPUT: input_path, IMAGE: image_path},
                           [Destination(OUTPUT, output_path, "table", layer=output_layer),
                            Destination(POLYGONS, polygons_path, "polygons", optional=True, layer=polygons_layer),
                            Destination(REPORT, report_path, "file", optional=True)], progress)


def _write_outputs(outputs, result, labels, model, sieve, title, progress):
    """The table, the polygons and the report in the run's ``CommitGroup`` ``outputs``, put in place together."""
    with outputs:
        files = _Files(outputs)
        progress.start("Writing the table")
        write_table(result, result.output, files, result.output_layer)
        if result.polygons:
            result.polygon_count = write_polygons(labels.dataset, labels.band, result.polygons, result, model, sieve,
                                                  progress, files, result.polygons_layer)
            progress.log(f"{result.polygon_count:,} polygons.")
        if result.report:
            progress.start("Writing the report")
            write_report(result, result.report, title, files)
        progress.check()
        files.commit()


def _windows(labels, image_bands, memory_mb):
    """Windows on the labels' block rows that fit MEMORY_MB with ``image_bands`` bands of IMAGE."""
    per_pixel = (BYTES_PER_PIXEL + BYTES_PER_IMAGE_BAND * image_bands) * CountStep.in_flight()
    return plan_windows(labels.width, labels.height, int(memory_mb * 2**20) // per_pixel,
                        row_step=labels.band.GetBlockSize()[1])


@dataclass(frozen=True)
class StatisticsSettings(checks.Settings):
    """The arguments of ``segment_statistics``, checked (``checked``)."""

    input_path: str = checks.rule(checks.path, INPUT)
    output_path: str = checks.rule(checks.path, OUTPUT)
    image_path: str | None = checks.rule(checks.path, IMAGE, None, optional=True)
    polygons_path: str | None = checks.rule(checks.path, POLYGONS, None, optional=True)
    report_path: str | None = checks.rule(checks.path, REPORT, None, optional=True)
    sieve: int = checks.rule(checks.whole, SIEVE, 0, low=0)
    memory_mb: float = checks.rule(checks.memory, default=256)
    scheduler: object = None


@within_budget
def segment_statistics(input_path: str, output_path: str, image_path: str | None = None,
                       polygons_path: str | None = None, report_path: str | None = None, sieve: int = 0,
                       memory_mb: float = 256, progress: Progress | None = None, output_layer: str | None = None,
                       polygons_layer: str | None = None, scheduler=None) -> StatisticsResult:
    """Per-segment statistics of a label raster (``segmenter:statistics``).

    Parameters
    ----------
    input_path : str
        INPUT: the label raster (one integer band; nodata excluded).
    output_path : str
        OUTPUT: the table, a GeoPackage (.gpkg) or CSV (.csv) file.
    image_path : str, optional
        IMAGE: a raster on the labels' grid; the table gives each band's mean and standard deviation per segment.
    polygons_path : str, optional
        POLYGONS: the segments as polygons (.gpkg).
    report_path : str, optional
        REPORT: an HTML page with a bar chart and the table.
    sieve : int
        SIEVE: regions smaller than this many pixels merge into their largest neighbour before polygonizing.
    memory_mb : float
        MEMORY_MB: working memory (window sizes, GDAL's block cache); the result does not depend on it.
    progress : Progress, optional
        Reports, logs and cancel.
    output_layer, polygons_layer : str, optional
        In a GeoPackage, the layers' names (default: the file's name): added beside the file's other layers,
        replacing only a same-named layer Map Segmenter wrote.
    scheduler : str or distributed.Client, optional
        A Dask scheduler to count the windows on (the workers read INPUT and IMAGE themselves: shared storage);
        None or empty: this process. The same table either way.

    Returns
    -------
    StatisticsResult
        The segments (by value) with their counts, areas, shares and colours, and what was written.
    """
    progress = progress or Progress()
    settings = StatisticsSettings.checked(input_path=input_path, output_path=output_path, image_path=image_path,
                                          polygons_path=polygons_path, report_path=report_path, sieve=sieve,
                                          memory_mb=memory_mb, scheduler=scheduler)
    input_path, output_path, image_path, polygons_path, report_path, sieve, memory_mb = (
        getattr(settings, name) for name in ("input_path", "output_path", "image_path", "polygons_path",
                                             "report_path", "sieve", "memory_mb"))
    labels = LabelRaster.open(input_path)
    dataset, band = labels.dataset, labels.band
    model = area_model(dataset, input_path)
    image, band_names = (None, [])
    if image_path:
        image, band_names = _open_image(image_path, dataset, input_path)
    outputs = _check_destinations(input_path, output_path, image_path, polygons_path, report_path, output_layer,
                                  polygons_layer, progress)
    if band.GetNoDataValue() is None and band.GetMaskFlags() & gdal.GMF_ALL_VALID:
        progress.warn(f"The label raster '{input_path}' declares no nodata value: every pixel is counted as a "
                      f"segment, 0 included.")

    windows = _windows(labels, len(band_names), memory_mb)
    # weights: seconds on 100 MPix of K-Means labels (count 0.9, sieve 1.6, polygonize 8-10, names and areas 1.3)
    progress.plan([("Counting segment pixels", 1 + len(band_names)), ("Writing the table", 0.05),
                   ("Sieving", 2 if polygons_path and sieve else 0), ("Polygonizing", 10 if polygons_path else 0),
                   ("Measuring polygons", 1.5 if polygons_path else 0), ("Writing the report", 0.05)])
    progress.start("Counting segment pixels")
    with Executor(settings.scheduler, progress, memory_mb) as executor:
        tally = _count(executor, _CountInputs(labels, image, model), windows)
    segments = _segments(tally, model, dataset, band, input_path)
    if not segments:
        raise InputError(f"The label raster '{input_path}' has no valid pixels (everything is nodata).")
    result = StatisticsResult(output_path, polygons_path, report_path, segments, model.fields, band_names,
                              model.method, windows=len(windows),
                              output_layer=gpkg_layer_name(output_path, output_layer)
                              if _table_format(output_path) == "GPKG" else None,
                              polygons_layer=gpkg_layer_name(polygons_path, polygons_layer) if polygons_path else None,
                              criterion=labels.metadata.get("criterion"))
    progress.log(f"{len(segments)} segments, {int(tally.counts.sum()):,} valid pixels, counted in {len(windows)} "
                 f"windows ({MEMORY_MB} {memory_mb:g}). {model.method}")
    _write_outputs(outputs, result, labels, model, sieve, f"Segment statistics of {os.path.basename(input_path)}",
                   progress)
    progress.update(1.0)
    return result
