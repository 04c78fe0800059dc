"""Windowed GDAL reading and writing: input validation, band choice, validity masks, atomic outputs."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from osgeo import gdal

from ..runtime import params
from ..runtime.errors import InputError, OutputError
from ..runtime.memory import thread_config
from ..runtime.outputs import (
    STALE_SIDECARS,
    CommitGroup,
    _remove_partial,
    check_path_length,
    is_write_failure,
    put_in_place,
    temporary_path,
    write_failure,
)
from .colour_tables import colour_table
from .metadata import FeatureMeta
from .region import PolygonMask, Region, check_mask_overlaps, window_dataset
from .windows import Window

gdal.UseExceptions()

def _compression():
    """ZSTD level 1 where GDAL has it, DEFLATE otherwise.

    Measured on 100 MPix of labels: ZSTD 0.13 s and 2 MB, DEFLATE 0.5 s and 4 MB. Any GDAL >= 2.3 built with
    zstd (QGIS 3.x on Windows, macOS and Linux) reads it."""
    options = gdal.GetDriverByName("GTiff").GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    return ["COMPRESS=ZSTD", "ZSTD_LEVEL=1"] if "ZSTD" in options else ["COMPRESS=DEFLATE", "ZLEVEL=1"]


GTIFF_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", *_compression(), "BIGTIFF=IF_SAFER"]
FLOAT_TYPES = (gdal.GDT_Float32, gdal.GDT_Float64)


def _exists(path):
    """Plain files must exist; GDAL virtual files (/vsizip/, /vsicurl/...) are asked of GDAL; subdataset names
    (NETCDF:"file":var, HDF5:...) are left to gdal.Open, which reports its own error."""
    if path.startswith("/vsi"):
        return gdal.VSIStatL(path) is not None
    if re.match(r"^[A-Za-z][A-Za-z0-9_]+:", path):
        return True
    return os.path.exists(path)


def open_raster(path: str, purpose: str = "input raster") -> gdal.Dataset:
    """Open a raster read-only, turning GDAL's failure into a message the user can act on.

    Parameters
    ----------
    path : str
        A file path or GDAL dataset name (/vsi..., subdatasets).
    purpose : str
        What the raster is to the step, as messages name it.

    Returns
    -------
    gdal.Dataset
        The dataset, with at least one band.

    Raises
    ------
    InputError
        The path is too long or does not exist, GDAL cannot open it, or it has no raster bands.
    """
    check_path_length(f"The {purpose}", path)
    if not path or not _exists(path):
        raise InputError(f"The {purpose} '{path}' does not exist. Choose an existing raster file.")
    try:
        dataset = gdal.Open(path, gdal.GA_ReadOnly)
    except RuntimeError as error:
        raise InputError(
            f"GDAL cannot read the {purpose} '{path}' ({error}). Check that it is a complete, uncorrupted raster."
        ) from None
    if dataset is None or dataset.RasterCount == 0:
        raise InputError(f"The {purpose} '{path}' has no raster bands. Choose a raster file.")
    return dataset


def damaged(path: str, error: Exception | str, xoff: int = 0, yoff: int = 0, width: int | None = None,
            height: int | None = None) -> InputError:
    """The ``InputError`` for a raster that opened but failed to read (truncated or corrupt file, lost source)."""
    where = "" if width is None else (
        f" in rows {yoff}..{yoff + height - 1}, columns {xoff}..{xoff + width - 1}")
    return InputError(
        f"The raster '{path}' is damaged or incomplete: GDAL failed to read it{where} ({str(error).rstrip('.')}). "
        f"Check it with "
        f"`gdalinfo -checksum {path}` (it reports every block it cannot read), then copy, download or export it "
        f"again."
    )


def read_window(source: gdal.Dataset | gdal.Band, xoff: int, yoff: int, width: int, height: int,
                path: str | None = None, **options: Any) -> np.ndarray:
    """``source.ReadAsArray`` (a dataset or band) with a read failure turned into ``damaged``'s InputError.

    Every read of an input (image, labels, features) goes through here, so a file that opens but cannot be read
    says which file and where, whichever step reads it.

    Parameters
    ----------
    source : gdal.Dataset or gdal.Band
        What to read.
    xoff, yoff, width, height : int
        The window, in pixels.
    path : str, optional
        The file, as messages name it; default the dataset's description.
    **options
        Passed to ``ReadAsArray`` (``band_list``, ``buf_xsize``...).

    Returns
    -------
    numpy.ndarray
        The pixels: (height, width) of a band, (bands, height, width) of a dataset.

    Raises
    ------
    InputError
        GDAL failed to read the window (a damaged or incomplete file).
    """
    try:
        return source.ReadAsArray(xoff, yoff, width, height, **options)
    except RuntimeError as error:
        if path is None:
            dataset = source.GetDataset() if isinstance(source, gdal.Band) else source
            path = dataset.GetDescription()
        raise damaged(path, error, xoff, yoff, width, height) from None


@dataclass
class InputRaster:
    """An opened input raster with the bands to segment and how to tell valid pixels."""

    path: str
    dataset: gdal.Dataset
    bands: list
    width: int
    height: int
    data_type: int
    block_height: int
    _mask_bands: list = field(default_factory=list)
    block_width: int = 0

    @property
    def geotransform(self) -> tuple | None:
        return self.dataset.GetGeoTransform(can_return_null=True)

    @property
    def projection(self) -> str:
        return self.dataset.GetProjection()

    @property
    def has_mask(self) -> bool:
        return bool(self._mask_bands) or self.data_type in FLOAT_TYPES

    def read(self, *where: Window | int) -> np.ndarray:
        """Pixels of the chosen bands as (bands, height, width) of a ``Window`` (or xoff, yoff, width, height)."""
        window = _window(where)
        data = read_window(self.dataset, *window.box, self.path, band_list=self.bands)
        return data.reshape(len(self.bands), window.height, window.width)

    def read_valid(self, *where: Window | int | np.ndarray, pixels: np.ndarray | None = None) -> np.ndarray | None:
        """Boolean validity of a ``Window`` (or xoff, yoff, width, height; then the window's ``pixels`` if read
        already): nodata, alpha = 0 and NaN are invalid. None when every pixel is valid."""
        if len(where) in (2, 5):
            *where, pixels = where
        window = _window(where)
        valid = None
        for mask_band in self._mask_bands:
            band_valid = read_window(mask_band, *window.box, self.path) > 0
            valid = band_valid if valid is None else valid & band_valid
        if self.data_type in FLOAT_TYPES:
            if pixels is None:
                pixels = self.read(window)
            finite = np.isfinite(pixels).all(axis=0)
            valid = finite if valid is None else valid & finite
        return valid

    def release_cache(self) -> None:
        """Drop GDAL's cached blocks so memory follows the window, not the raster size."""
        self.dataset.FlushCache()


def _window(where):
    """A ``Window`` from read arguments: one Window, or xoff, yoff, width, height."""
    return Window.of(where[0] if len(where) == 1 else where)


def is_paletted(dataset: gdal.Dataset) -> bool:
    return dataset.RasterCount == 1 and dataset.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_PaletteIndex


def open_input(path: str, bands: Sequence[int] | None = None, grey_as_rgb: bool = False,
               region: Region | None = None, direct: bool = False) -> InputRaster:
    """Open the raster to segment and choose its bands.

    Default bands: the first three bands that are not alpha. An alpha band is a validity mask, never a colour.
    A paletted raster (rendered maps, GIF, PNG-8) is read through its colour table as red, green, blue (and the
    table's alpha as validity), unless BANDS asks for its index band.

    Parameters
    ----------
    path : str
        The raster to segment.
    bands : sequence of int, optional
        BANDS (1-based); default the first three bands that are not alpha.
    grey_as_rgb : bool
        For networks that take red, green, blue: one band, given or the only colour band, is used three times.
    region : Region, optional
        Only the pixels under its extent, and nodata outside its polygons.
    direct : bool
        An uncompressed GeoTIFF is read straight from the file into each read's array (GTIFF_DIRECT_IO), not
        through GDAL's block cache (for readers that read each pixel about once: the CNN's tiles of 25 MPix in
        0.041-0.044 instead of 0.059-0.064 CPU s, bench/profile_cnn_embeddings.py, and no cache filled); other
        formats as always.

    Returns
    -------
    InputRaster
        The opened raster, its bands, common data type and validity masks.

    Raises
    ------
    InputError
        The raster cannot be opened, a band is out of range, the default finds fewer than three colour bands, or
        the region does not fit the raster.
    """
    with thread_config("GTIFF_DIRECT_IO", "YES" if direct else None):  # the GeoTIFF driver reads it at opening
        dataset = open_raster(path)
    if not bands and is_paletted(dataset):
        dataset = gdal.Translate("", dataset, format="VRT", rgbExpand="rgba")  # colours, not palette indices
    if region is not None and region.extent is not None:
        dataset = window_dataset(dataset, region.extent, path)
    bands = _chosen_bands(dataset, bands, grey_as_rgb)
    first = dataset.GetRasterBand(bands[0])
    data_type = first.DataType
    if any(dataset.GetRasterBand(band).DataType != data_type for band in bands):
        data_type = gdal.GDT_Float32 if any(
            dataset.GetRasterBand(band).DataType in FLOAT_TYPES for band in bands
        ) else gdal.GDT_UInt16
    masks = []
    per_dataset_seen = False
    for band in bands:
        raster_band = dataset.GetRasterBand(band)
        flags = raster_band.GetMaskFlags()
        if flags & gdal.GMF_ALL_VALID:
            continue
        if flags & gdal.GMF_PER_DATASET:
            if per_dataset_seen:
                continue
            per_dataset_seen = True
        masks.append(raster_band.GetMaskBand())
    if region is not None and region.mask_path:
        polygons = PolygonMask(region.mask_path, dataset, region.mask_name)
        check_mask_overlaps(polygons, path)
        masks.append(polygons)
    block_width, block_height = first.GetBlockSize()
    return InputRaster(
        path=path,
        dataset=dataset,
        bands=bands,
        width=dataset.RasterXSize,
        height=dataset.RasterYSize,
        data_type=data_type,
        block_height=block_height,
        _mask_bands=masks,
        block_width=block_width,
    )


def _chosen_bands(dataset, bands, grey_as_rgb):
    """The band numbers ``open_input`` reads: BANDS checked against the raster, or the first three colour bands
    (the only one, three times, with ``grey_as_rgb``)."""
    count = dataset.RasterCount
    alpha = [
        index
        for index in range(1, count + 1)
        if dataset.GetRasterBand(index).GetColorInterpretation() == gdal.GCI_AlphaBand
    ]
    colour = [index for index in range(1, count + 1) if index not in alpha]
    if bands:
        bands = [int(band) for band in bands]
        bad = [band for band in bands if band < 1 or band > count]
        if bad:
            raise InputError(
                f"{params.BANDS} {bad} out of range: the raster has {count} band{'s' if count != 1 else ''} "
                f"(1..{count})."
            )
    elif grey_as_rgb and len(colour) == 1:
        bands = colour
    else:
        if len(colour) < 3:
            noun = "band" if len(colour) == 1 else "bands"
            raise InputError(
                f"The raster has {len(colour)} colour {noun}; the default needs 3. Choose the bands to segment "
                f"with {params.BANDS} (for example {params.BANDS}=1 for a grey-scale raster)."
            )
        bands = colour[:3]
    if grey_as_rgb and len(bands) == 1:
        bands = bands * 3
    return bands


def robust_range(raster: InputRaster, low: float = 1.0, high: float = 99.0,
                 max_side: int = 1024) -> list[tuple[float, float]]:
    """Per-band (lo, hi) percentiles of valid pixels from a decimated read; bounded memory for any size."""
    scale = min(1.0, max_side / max(raster.width, raster.height))
    buf_w, buf_h = max(1, round(raster.width * scale)), max(1, round(raster.height * scale))
    data = read_window(
        raster.dataset, 0, 0, raster.width, raster.height, raster.path, buf_xsize=buf_w, buf_ysize=buf_h,
        band_list=raster.bands,
    ).reshape(len(raster.bands), buf_h, buf_w).astype(np.float64)
    valid = np.isfinite(data).all(axis=0)
    for mask_band in raster._mask_bands:
        valid &= read_window(mask_band, 0, 0, raster.width, raster.height, raster.path, buf_xsize=buf_w,
                             buf_ysize=buf_h) > 0
    if not valid.any():
        raise InputError(f"The raster '{raster.path}' has no valid pixels (everything is nodata or transparent).")
    ranges = []
    for band in data:
        lo, hi = np.percentile(band[valid], [low, high])
        if hi <= lo:
            hi = lo + 1.0
        ranges.append((float(lo), float(hi)))
    return ranges


def value_ranges(raster: InputRaster, reference: dict[str, Any] | None = None) -> list[tuple[float, float]] | None:
    """The (lo, hi) per band that map a non-8-bit raster onto 0..255, or None for 8-bit input.

    With a ``reference`` (the metadata of an earlier label raster) its ranges are reused, so that the same
    surface gets the same descriptor, and so the same id, in every raster segmented against it.

    Parameters
    ----------
    raster : InputRaster
        The opened input.
    reference : dict, optional
        The SEGMENTER_* items of a REFERENCE label raster.

    Returns
    -------
    list of (float, float) or None
        One (lo, hi) per band: the reference's when it has one per band, else the 1st and 99th percentiles of
        the valid pixels; None for Byte input.

    Raises
    ------
    InputError
        The raster has no valid pixels.
    """
    if raster.data_type == gdal.GDT_Byte:
        return None
    stored = FeatureMeta.parse((reference or {}).get("features")).input_ranges
    if stored and len(stored) == len(raster.bands):
        return [(float(lo), float(hi)) for lo, hi in stored]
    return robust_range(raster)


def byte_stretch(ranges: Sequence[tuple[float, float]]) -> Callable[[np.ndarray], np.ndarray]:
    """In-place function taking float32 pixels (bands, h, w) from ``ranges`` (per band (lo, hi)) onto 0..255,
    clipped, NaN -> 0."""
    lo = np.array([r[0] for r in ranges], np.float32)[:, None, None]
    span = np.array([255.0 / (r[1] - r[0]) for r in ranges], np.float32)[:, None, None]

    def stretch(pixels):
        pixels -= lo[: len(pixels)]
        pixels *= span[: len(pixels)]
        np.clip(pixels, 0.0, 255.0, out=pixels)
        return np.nan_to_num(pixels, copy=False, nan=0.0)

    return stretch


@contextmanager
def gdal_errors():
    """Collect the messages of GDAL's errors (this thread's) inside the block into the list it yields: with
    exceptions on, GDAL raises only the last one, which often names a symptom, not the cause."""
    errors = []

    def collect(error_class, number, message):
        if error_class >= gdal.CE_Failure:
            errors.append(message)

    gdal.PushErrorHandler(collect)
    try:
        yield errors
    finally:
        gdal.PopErrorHandler()


@contextmanager
def destructor_errors(errors):
    """Append to ``errors`` the messages of exceptions raised by destructors inside the block, which Python would
    otherwise print ("Exception ignored in ..."): GDAL's bindings raise a failed close from the dataset's."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: errors.append(str(unraisable.exc_value))
    try:
        yield
    finally:
        sys.unraisablehook = previous


class AtomicRaster:
    """A GeoTIFF written under a temporary name beside the destination and renamed once complete.

    A failed or cancelled run leaves the destination untouched: no half-written file, and an existing file
    is only replaced once the new one is complete. In a ``CommitGroup`` (``group``) ``commit`` only closes and
    checks the file: the group renames it with the run's other outputs once all are complete. Every write is
    checked: a full disk or a file size limit raises an ``OutputError`` naming the file (``name``: its
    parameter, by default the group's name for ``path``).
    """

    def __init__(self, path: str, width: int, height: int, bands: int, data_type: int,
                 geotransform: Sequence[float] | None = None, projection: str | None = None,
                 options: Sequence[str] | None = None, palette: Sequence[tuple] | bool = False,
                 gcps_from: gdal.Dataset | None = None, gcp_scale: float = 1, group: CommitGroup | None = None,
                 name: str | None = None):
        """Create the temporary GeoTIFF.

        Parameters
        ----------
        path : str
            The destination.
        width, height, bands : int
            Its size and band count.
        data_type : int
            Its GDAL data type.
        geotransform, projection : optional
            Its georeferencing.
        options : sequence of str, optional
            GTiff creation options; default ``GTIFF_OPTIONS``.
        palette : sequence of (r, g, b), optional
            Colours of ids 1..K, set as band 1's colour table before any data is written.
        gcps_from : gdal.Dataset, optional
            A dataset georeferenced by ground control points (used when ``geotransform`` is None).
        gcp_scale : float
            Input pixels per cell of this raster, for those points.
        group : CommitGroup, optional
            The run's outputs, committed together.
        name : str, optional
            How messages name the output (its parameter).

        Raises
        ------
        OutputError
            The file cannot be created.
        """
        self.path = path
        self.group = group
        self.name = name or (group.name_of(path) if group is not None else "the output")
        self.size = width * height * bands * max(1, gdal.GetDataTypeSize(data_type) // 8)
        self.temp_path = temporary_path(path, ".tif")
        self.dataset = None
        driver = gdal.GetDriverByName("GTiff")
        try:
            self.dataset = self.checked(driver.Create, self.temp_path, width, height, bands, data_type,
                                        options or GTIFF_OPTIONS)
        except (RuntimeError, OutputError) as error:
            self.abort()
            if isinstance(error, OutputError):
                raise
            raise OutputError(
                f"Cannot create {self.name} '{path}' ({error}). Choose a folder you can write to."
            ) from None
        if group is not None:
            group.track(self)
        if geotransform is not None:
            self.dataset.SetGeoTransform(geotransform)
        if projection:
            self.dataset.SetProjection(projection)
        if geotransform is None and gcps_from is not None and gcps_from.GetGCPCount():
            # georeferenced by ground control points (a scanned map): the output keeps them, on its own grid
            self.dataset.SetGCPs(scaled_gcps(gcps_from.GetGCPs(), gcp_scale), gcps_from.GetGCPProjection())
        if palette:
            # A GeoTIFF cannot always take a colour table once data is written: set it before writing
            # (``palette``: RGB colours of ids 1..K).
            self.dataset.GetRasterBand(1).SetRasterColorTable(colour_table(palette))

    def band(self, index: int = 1) -> gdal.Band:
        return self.dataset.GetRasterBand(index)

    def checked(self, operation: Callable, *arguments: Any) -> Any:
        """``operation(*arguments)`` (a GDAL call that writes to this file) with its write errors (full disk,
        file size limit) turned into an ``OutputError`` naming this file."""
        with gdal_errors() as errors:
            try:
                return operation(*arguments)
            except RuntimeError as error:
                messages = [*errors, str(error)]
                if not any(is_write_failure(message) for message in messages):
                    raise
        # Raised here, outside the handler, with no reference left to the GDAL call: the tracebacks would
        # keep the dataset open after ``abort``.
        del operation, arguments
        raise write_failure([(self.name, self.path)], " / ".join(dict.fromkeys(messages)), self.size,
                            compressed=True)

    def write(self, array: np.ndarray, xoff: int, yoff: int, band: int = 1) -> None:
        self.checked(self.dataset.GetRasterBand(band).WriteArray, array, xoff, yoff)

    def release_cache(self) -> None:
        self.checked(self.dataset.FlushCache)

    def _close(self):
        """Write what is cached, close, and make sure all of it reached the file."""
        with gdal_errors() as errors:
            try:
                self.dataset.FlushCache()
            except RuntimeError as error:
                errors.append(str(error))
        errors += self._release()  # closing writes the last blocks and the file's directory
        try:
            if os.path.getsize(self.temp_path) == 0:
                errors.append("the file is empty")
        except OSError as error:
            errors.append(error.strerror or str(error))
        if errors:
            self.abort()
            raise write_failure([(self.name, self.path)], " / ".join(dict.fromkeys(errors)), self.size,
                                compressed=True)

    def commit(self) -> str:
        """Close and check the file; put it in place now, or with the group's other outputs at its commit.

        Returns
        -------
        str
            The destination path.

        Raises
        ------
        OutputError
            The last blocks could not be written or the file is empty (full disk, file size limit).
        """
        self._close()
        if self.group is not None:
            self.group.stage(self.temp_path, self.path, STALE_SIDECARS)
        else:
            # Sidecars of a file being replaced describe the old data: QGIS would draw its overviews when
            # zoomed out and show its statistics.
            put_in_place(self.temp_path, self.path, STALE_SIDECARS)
        return self.path

    def _release(self):
        """Close the dataset (this drops the last reference to it); returns the messages of the errors closing it
        met: reported to the error handler, or raised from the dataset's destructor with GDAL's exceptions on. (Not
        Dataset.Close(): after a failed write, GDAL 3.10 crashes destroying a dataset whose Close() failed.)"""
        with gdal_errors() as errors, destructor_errors(errors):
            self.dataset = None
        return list(dict.fromkeys(errors))

    def abort(self) -> None:
        """Give the file up: close it and remove the temporary file (the destination is untouched)."""
        if self.dataset is not None:
            self._release()  # a file being given up: its errors do not matter
        _remove_partial(self.temp_path)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self.abort()
        return False


def scaled_gcps(gcps: Sequence[gdal.GCP], factor: float) -> Sequence[gdal.GCP]:
    """Ground control points for a grid whose cells are ``factor`` input pixels wide."""
    if factor == 1:
        return gcps
    return [gdal.GCP(g.GCPX, g.GCPY, g.GCPZ, g.GCPPixel / factor, g.GCPLine / factor, g.Info, g.Id) for g in gcps]


def scaled_geotransform(geotransform: Sequence[float] | None, factor: float) -> tuple | None:
    """Geotransform of a grid whose cells are ``factor`` input pixels wide."""
    if geotransform is None:
        return None
    x0, dx, rx, y0, ry, dy = geotransform
    return (x0, dx * factor, rx * factor, y0, ry * factor, dy * factor)
