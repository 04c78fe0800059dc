"""Destinations: checked before any work, written under temporary names, put in place together or not at all.

Every engine entry point calls ``prepare_outputs`` with its inputs and destinations before it does any work:
each destination (and the ``.qml`` style a label raster gets) must have a supported extension, lie in an
existing folder we can write to, not be a folder, have a name the file system takes, and be neither an input
nor another destination of the run (compared by real path: symbolic and hard links are the same file). It
returns the run's ``CommitGroup``: every file is written under a temporary name beside its destination, and
``commit`` renames them all only once all are complete, so a failure or a cancel in the last output leaves
every destination as it was.

Temporary names carry the writing process's id (``.NAME.ms-<pid>-<host>-<random>.partial.tif``; scratch
folders ``segmenter-ms-<pid>-<host>-*``). A run stopped by kill -9 or a power cut cannot clean up after
itself, so ``prepare_outputs`` removes such leftovers beside its destinations and in the scratch folder
once the process that made them is gone; a live run's files are never touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from osgeo import gdal

from .errors import InputError, OutputError
from .progress import Progress

RASTER_EXTENSIONS = ("tif", "tiff")  # GeoTIFF, the only raster format the engine writes
PNG_EXTENSIONS = ("png",)
STALE_SIDECARS = (".ovr", ".aux.xml", ".msk")  # describe the data of a raster being replaced
PAM_SUFFIX = ".aux.xml"
NAME_MAX = 255
# GDAL builds sidecar names (NAME.aux.xml, NAME.ovr...) in buffers of CPL_PATH_BUF_SIZE (2048) bytes: a longer path
# fails deep inside ("Destination buffer too small"), after work was done
GDAL_PATH_MAX = 2048 - 1 - len(PAM_SUFFIX)
# Files that belong to a raster or vector file without being it: GDAL and QGIS read them with it. Suffixes added to
# the whole name, and (the second list) put in place of its extension
SIDECAR_SUFFIXES = {".aux.xml": "GDAL metadata", ".ovr": "overviews", ".msk": "mask", ".aux": "metadata",
                    ".rrd": "overviews", ".vat.dbf": "attribute table", ".xml": "metadata", ".qml": "QGIS style",
                    ".sld": "style", ".qmd": "QGIS metadata", ".prj": "projection", ".wld": "world file"}
SIDECAR_EXTENSIONS = {".qml": "QGIS style", ".qmd": "QGIS metadata", ".sld": "style", ".prj": "projection",
                      ".wld": "world file", ".tfw": "world file", ".tifw": "world file", ".tiffw": "world file",
                      ".jgw": "world file", ".jpgw": "world file", ".jpegw": "world file", ".pgw": "world file",
                      ".pngw": "world file", ".gfw": "world file", ".gifw": "world file", ".bpw": "world file",
                      ".bmpw": "world file", ".j2w": "world file", ".rdw": "world file", ".blw": "world file",
                      ".aux": "metadata", ".rrd": "overviews", ".ovr": "overviews", ".cpg": "encoding",
                      ".dbf": "attributes", ".shx": "index", ".vat.dbf": "attribute table", ".aux.xml": "metadata",
                      ".imd": "metadata", ".rpb": "RPC", ".hdr": "header", ".csvt": "column types"}
GPKG_MARK = "Map Segmenter"  # the start of gpkg_contents.description of each layer we write in a GeoPackage

HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace"), usedforsecurity=False).hexdigest()[:6]
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")  # beside a GeoPackage while SQLite writes it
_PARTIAL = re.compile(r"^\..*\.ms-(\d+)-([0-9a-f]{6})-[0-9a-f]{8}\.partial(\.[A-Za-z0-9]+)*(-wal|-shm|-journal)?$",
                      re.DOTALL)
_SCRATCH = re.compile(r"^segmenter-ms-(\d+)-([0-9a-f]{6})-")


@dataclass(frozen=True)
class Destination:
    """A file a run writes: ``name`` is its parameter (OUTPUT, FEATURES, COMPOSITE, QUICKLOOK).

    ``kind``: "labels" (a GeoTIFF with a .qml style beside it), "raster" (a GeoTIFF), "png", "table" or
    "polygons" (a GeoPackage, which gets a layer of its own: ``layer`` or the file's name, or a format the caller
    checks itself such as CSV) or "file" (a format the caller checks itself: reports); an ``optional``
    destination without a path is not written."""

    name: str
    path: str
    kind: str = "raster"
    optional: bool = False
    layer: str | None = None  # a GeoPackage destination (kind "table" or "polygons"): the layer written in it


def style_path(raster_path: str) -> str:
    """Where QGIS looks for the style of a raster: its name with the extension .qml."""
    return os.path.splitext(raster_path)[0] + ".qml"


# ------------------------------------------------------------------ names


def _name_max(directory):
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return NAME_MAX


def _truncated(text, size):
    """The longest start of ``text`` whose file-system encoding takes at most ``size`` bytes."""
    while len(os.fsencode(text)) > size:
        text = text[:-1]
    return text


def temporary_path(path: str, suffix: str) -> str:
    """A hidden name beside ``path`` for its content while it is written; it fits the file system's name length
    (a long name is shortened and keeps a hash of itself) with room for GDAL's .aux.xml beside it."""
    directory, name = os.path.split(os.path.abspath(path))
    tag = f".ms-{os.getpid()}-{HOST}-{secrets.token_hex(4)}.partial{suffix}"
    room = _name_max(directory) - len(PAM_SUFFIX) - len(tag) - 1
    if len(os.fsencode(name)) > room:
        digest = hashlib.sha1(os.fsencode(name), usedforsecurity=False).hexdigest()[:8]
        name = f"{_truncated(name, room - len(digest) - 1)}~{digest}"
    return os.path.join(directory, f".{name}{tag}")


def scratch_folder() -> str:
    """A new folder for this run's scratch files in the system's temporary folder, named after this process."""
    return tempfile.mkdtemp(prefix=f"segmenter-ms-{os.getpid()}-{HOST}-")


# ------------------------------------------------------------------ leftovers of stopped runs


def _alive(pid):
    """Whether process ``pid`` (on this machine) may still be running. Only POSIX can ask without harm
    (on Windows os.kill ends the process): elsewhere every owner counts as alive and nothing is removed."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def _owner(name, pattern):
    match = pattern.match(name)
    if match is None or match.group(2) != HOST:  # another machine's run on shared storage: not ours to judge
        return None
    return int(match.group(1))


def sweep(directories: Iterable[str], scratch: str | None = None) -> list[str]:
    """Remove partial files (in ``directories``) and scratch folders (in ``scratch``) whose process is gone.

    Parameters
    ----------
    directories : iterable of str
        Folders to clear of temporary files (``.NAME.ms-<pid>-<host>-*.partial*``) of stopped runs.
    scratch : str, optional
        The folder that holds scratch folders (``segmenter-ms-<pid>-<host>-*``): the system's temporary folder.

    Returns
    -------
    list of str
        The paths removed. A live process's files, and other hosts', are never touched.
    """
    removed = []
    places = [(directory, _PARTIAL, False) for directory in dict.fromkeys(directories)]
    if scratch:
        places.append((scratch, _SCRATCH, True))
    for directory, pattern, folders in places:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            pid = _owner(entry.name, pattern)
            if pid is None or _alive(pid):
                continue
            try:
                if folders and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                elif not folders and entry.is_file(follow_symlinks=False):
                    os.remove(entry.path)
                else:
                    continue
            except OSError:
                continue
            removed.append(entry.path)
    return removed


# ------------------------------------------------------------------ checks before any work


def _same_file(first, second):
    """Whether two paths name one file: equal real paths (symbolic links resolved) or one inode (hard links)."""
    if os.path.normcase(os.path.realpath(first)) == os.path.normcase(os.path.realpath(second)):
        return True
    try:
        return os.path.samefile(first, second)
    except (OSError, ValueError):
        return False


def check_path_length(name: str, path: Any, extra: int = 0) -> Any:
    """Refuse a path GDAL cannot take (its sidecar names are built in 2048-byte buffers), before any work.

    Parameters
    ----------
    name : str
        How messages name the file (its parameter).
    path : Any
        The path; anything but a non-empty str (and /vsi... names) is returned unchecked.
    extra : int
        Bytes the longest name made from it adds (a temporary name beside a destination).

    Returns
    -------
    Any
        ``path``.

    Raises
    ------
    InputError
        An input's path (``extra`` 0) is too long.
    OutputError
        A destination's path is too long.
    """
    if not isinstance(path, str) or not path or path.startswith("/vsi"):
        return path
    size = len(os.fsencode(os.path.abspath(path)))
    if size + extra > GDAL_PATH_MAX:
        unit = "characters" if size == len(os.path.abspath(path)) else "bytes"
        limit = GDAL_PATH_MAX - extra
        error = OutputError if extra else InputError
        raise error(
            f"{name}'s path is {size} {unit} long ('{path[:60]}...{path[-40:]}'); GDAL takes paths of at most {limit} "
            f"{unit}{' for this output' if extra else ''}. Move the file to a folder with a shorter path, or give it "
            f"a shorter name."
        )
    return path


@contextmanager
def _quiet_gdal():
    """GDAL's complaints about a file it only probes stay out of what the user sees."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def input_files(path: str) -> dict[str, str]:
    """{real path: what it is} of every file that belongs to the input ``path``: itself, what GDAL lists as its
    files (GetFileList: sidecars, a VRT's sources, a shapefile's parts), and the sidecars GDAL and QGIS would read
    with it, whether they exist yet or not (writing one would change how the input reads)."""
    files = {os.path.realpath(path): "the file itself"}
    if path.startswith("/vsi"):
        return files
    try:
        with _quiet_gdal():
            dataset = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_VECTOR | gdal.OF_READONLY)
        listed = (dataset.GetFileList() or []) if dataset is not None else []
        dataset = None
    except RuntimeError:  # whatever GDAL thinks of it, the known sidecars below still count
        listed = []
    for item in listed:
        if not item.startswith("/vsi"):
            files.setdefault(os.path.realpath(item), "one of its files")
    stem = os.path.splitext(path)[0]
    for suffix, what in SIDECAR_SUFFIXES.items():
        files.setdefault(os.path.realpath(path + suffix), f"its {what} ({os.path.basename(path)}{suffix})")
    for suffix, what in SIDECAR_EXTENSIONS.items():
        files.setdefault(os.path.realpath(stem + suffix), f"its {what} ({os.path.basename(stem)}{suffix})")
    return files


def belongs_to(path: str, files: Mapping[str, str]) -> str | None:
    """What ``path`` is among ``files`` (``input_files``), or None: real paths compared, case-insensitively for the
    sidecar names GDAL probes in both cases, and hard links."""
    real = os.path.realpath(path)
    if real in files:
        return files[real]
    folded = {os.path.normcase(key).lower(): what for key, what in files.items()}
    if os.path.normcase(real).lower() in folded:
        return folded[os.path.normcase(real).lower()]
    for item, what in files.items():
        if _same_file(path, item):
            return what
    return None


# ------------------------------------------------------------------ GeoPackage layers


def quote_identifier(name: str) -> str:
    """An SQL identifier (a layer or column name) in double quotes, embedded quotes doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


GPKG_RESERVED = ("layer_styles", "sqlite_", "gpkg_", "rtree_")


def gpkg_layers(path: str) -> dict[str, str] | None:
    """{layer name: gpkg_contents description} of the GeoPackage ``path``; None when it is not one."""
    try:
        with _quiet_gdal():
            dataset = gdal.OpenEx(path, gdal.OF_VECTOR | gdal.OF_RASTER | gdal.OF_READONLY, ["GPKG"])
        if dataset is None:
            return None
        layers = {}
        result = dataset.ExecuteSQL("SELECT table_name, description FROM gpkg_contents")
        if result is not None:
            for feature in result:
                layers[feature.GetField(0)] = feature.GetField(1) or ""
            dataset.ReleaseResultSet(result)
        dataset = None
    except RuntimeError:  # not a GeoPackage GDAL can read
        return None
    return layers


def gpkg_layer_name(path: str, layer: str | None = None) -> str:
    """The layer a GeoPackage destination writes: ``layer`` when given, else the file's name without extension."""
    return layer or os.path.splitext(os.path.basename(path))[0]


def is_gpkg(destination: Destination) -> bool:
    return destination.kind in ("table", "polygons") and os.path.splitext(destination.path)[1].lower() == ".gpkg"


def _check_gpkg_layer(destination):
    """A GeoPackage destination gets a layer of its own: beside the user's other layers, replacing only a
    same-named layer that Map Segmenter wrote."""
    name, path, layer = destination.name, destination.path, gpkg_layer_name(destination.path, destination.layer)
    if not layer.strip():
        raise OutputError(f"{name}: the layer name in '{path}' is empty. Give the layer a name.")
    if layer.lower().startswith(GPKG_RESERVED):
        raise OutputError(f"{name}: '{layer}' is a name GeoPackage and QGIS keep for their own tables. Give the "
                          f"layer another name.")
    if not os.path.lexists(path):
        return
    layers = gpkg_layers(path)
    if layers is None:
        raise OutputError(
            f"{name} '{path}' exists and is not a GeoPackage: it would be replaced. Choose a new file name, or "
            f"an existing GeoPackage to add the layer to."
        )
    owner = next((key for key in layers if key.lower() == layer.lower()), None)
    if owner is not None and not layers[owner].startswith(GPKG_MARK):
        raise OutputError(
            f"{name}: the GeoPackage '{path}' already holds a layer '{owner}' that Map Segmenter did not write: "
            f"it is kept. Choose another layer name (ogr:dbname='{path}' table=\"new_name\") or another file."
        )


def _check_destination(destination):
    name, path = destination.name, destination.path
    extensions = [f".{extension}" for extension in (PNG_EXTENSIONS if destination.kind == "png"
                                                     else RASTER_EXTENSIONS)]
    extension = os.path.splitext(path)[1].lower()
    if destination.kind in ("labels", "raster", "png") and extension not in extensions:
        has = f"the extension {os.path.splitext(path)[1]}" if extension else "no extension"
        writes = "a PNG image" if destination.kind == "png" else "a GeoTIFF"
        raise OutputError(
            f"{name} '{path}' has {has}, but it is written as {writes}: give it the extension "
            f"{' or '.join(extensions)}."
        )
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise OutputError(f"The output folder '{directory}' does not exist. Choose an existing folder.")
    if os.path.isdir(path):
        raise OutputError(
            f"{name} '{path}' is a folder. Choose a file name, for example "
            f"'{os.path.join(path, 'segments' + extensions[0])}'."
        )
    length, limit = len(os.fsencode(os.path.basename(path))), _name_max(directory)
    if length > limit:
        raise OutputError(
            f"{name}'s file name is {length} bytes long; the file system of '{directory}' allows at most {limit}. "
            f"Choose a shorter name."
        )
    check_path_length(name, path, len(os.fsencode(os.path.basename(temporary_path(path, extension or ".x")))) -
                      len(os.fsencode(os.path.basename(path))))
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"Cannot write {name} '{path}': permission denied. Choose a folder you can write to.")
    try:  # the only sure test (read-only file systems, ACLs, root on special folders) is to try
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise OutputError(
            f"Cannot write {name} '{path}': {(error.strerror or str(error)).lower()}. Choose a folder you can "
            f"write to."
        ) from None


def prepare_outputs(inputs: Mapping[str, str | None], destinations: Sequence[Destination],
                    progress: Progress | None = None,
                    other_inputs: Mapping[str, str | None] | None = None) -> CommitGroup:
    """Check the destinations of a run against each other and its inputs, remove what stopped runs left beside
    them, and return the ``CommitGroup`` to write them with. Call before any work.

    Parameters
    ----------
    inputs : mapping of str to str or None
        {parameter: path} of the input rasters (their .qml styles are theirs, never replaced); empty paths skipped.
    destinations : sequence of Destination
        What the run writes; an optional one without a path is left out.
    progress : Progress, optional
        Told of the leftovers removed, and warned of styles that are kept.
    other_inputs : mapping of str to str or None, optional
        {parameter: path} of other input files (a model).

    Returns
    -------
    CommitGroup
        The group to write the destinations in.

    Raises
    ------
    OutputError
        A destination is missing, unsupported, unwritable, an input (or its file) or another destination.
    """
    styled = {name: path for name, path in inputs.items() if path}
    inputs = {**styled, **{name: path for name, path in (other_inputs or {}).items() if path}}
    for destination in destinations:
        if not destination.path and not destination.optional:
            raise OutputError(f"No file was given for {destination.name}. Choose where to save the result.")
    destinations = [destination for destination in destinations if destination.path]
    for destination in destinations:
        _check_destination(destination)
    written = []  # (what, path, parameter, GeoPackage layer): every file the run writes
    for destination in destinations:
        layer = gpkg_layer_name(destination.path, destination.layer) if is_gpkg(destination) else None
        written.append((destination.name, destination.path, destination.name, layer))
        if destination.kind == "labels":
            written.append((f"The style sidecar of {destination.name}", style_path(destination.path),
                            destination.name, None))
    owned = {source_name: input_files(source) for source_name, source in inputs.items()}
    for number, (what, path, parameter, layer) in enumerate(written):
        for source_name, source in inputs.items():
            if _same_file(path, source):
                raise OutputError(
                    f"{what} '{path}' is also an input ({source_name} '{source}'): writing it would destroy that "
                    f"input. Choose a different file for {parameter}."
                )
            belongs = belongs_to(path, owned[source_name])
            if belongs is not None and not what.startswith("The style sidecar"):  # a style is skipped, with a warning
                raise OutputError(
                    f"{what} '{path}' belongs to the input {source_name} '{source}' ({belongs}): writing it would "
                    f"change or destroy that input. Choose a different file for {parameter}."
                )
        for other_what, other, _, other_layer in written[:number]:
            if not _same_file(path, other):
                continue
            if layer is not None and other_layer is not None:
                if layer.lower() == other_layer.lower():
                    raise OutputError(
                        f"{what} and {other_what} would both be the layer '{layer}' of '{path}': each output needs a "
                        f"layer of its own. Choose a different layer name for {parameter}."
                    )
                continue
            raise OutputError(
                f"{what} '{path}' is the same file as {other_what} '{other}': each output needs a file of its own. "
                f"Choose a different file for {parameter}."
            )
    for destination in destinations:
        if is_gpkg(destination):
            _check_gpkg_layer(destination)
    group = CommitGroup(destinations, styled, progress)
    removed = sweep([os.path.dirname(os.path.abspath(d.path)) for d in destinations], tempfile.gettempdir())
    if removed and progress is not None:
        progress.log(f"Removed {len(removed)} leftovers of runs that were stopped before they finished: "
                     f"{', '.join(removed)}")
    return group


# ------------------------------------------------------------------ write errors


# What GDAL 3.6 to 3.11 (libtiff, its PNG and GeoTIFF drivers, its block cache) and the system say when data could
# not be written. Newer GDAL often names only the libtiff call ("TIFFWriteDirectoryTagData:IO error writing tag
# data", "TIFFAppendToStrip:Write error at scanline 0"), not the system's reason: ``write_failure`` then finds the
# reason from the state of the file system and the process's limits.
WRITE_FAILURES = ("no space left", "file too large", "disk quota", "write error", "io error writing",
                  "error writing", "free disk space", "short write", "failed to write", "could not write",
                  "cannot write", "writing a dirty block", "write failed", "error while writing")


def is_write_failure(message: Any) -> bool:
    """Whether a GDAL or system message says that data could not be written."""
    text = str(message).lower()
    return any(pattern in text for pattern in WRITE_FAILURES)


def size_text(size: float) -> str:
    if size < 1e3:
        return f"{size} bytes"
    if size < 1e6:
        return f"{max(1, round(size / 1e3))} kB"
    if size < 1e9:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.1f} GB"


def file_size_limit() -> int | None:
    """This process's limit on the size of a file it writes (``ulimit -f``), in bytes; None when unlimited."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _write_failure_reason(text, size, free, paths):
    """(reason, advice) for a write that failed with the lower-case message ``text``: from the message when it says
    why, else from what is true now (less free space than the file needs; a file at this process's size limit)."""
    limit = file_size_limit()
    at_limit = limit is not None and (size >= limit or any(_size(path) >= limit for path in paths))
    says_other = any(word in text for word in ("file too large", "quota", "permission", "denied", "read-only"))
    if "no space left" in text or "free disk space" in text or (
            not says_other and not at_limit and free is not None and free < size):
        return "the disk is full", "Free some space or choose a folder on another disk."
    if "file too large" in text or at_limit:
        return ("the file would exceed the file size limit of this system or process",
                "Raise the limit (ulimit -f) or choose a folder on a file system that takes larger files.")
    if "quota" in text:
        return "the disk quota is exceeded", "Free some space or choose a folder outside the quota."
    return None


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def write_failure(targets: Sequence[tuple[str, str]], message: Any, size: float,
                  compressed: bool = False) -> OutputError:
    """The OutputError for files that could not be written, with the reason and what to do.

    Parameters
    ----------
    targets : sequence of (str, str)
        (what, path) of the files: how messages name them, and where they go.
    message : Any
        GDAL's or the system's words.
    size : float
        Roughly the bytes they need (an upper bound when ``compressed``).
    compressed : bool
        Whether ``size`` is the uncompressed size of a compressed file.

    Returns
    -------
    OutputError
        The error to raise.
    """
    text = str(message).lower()
    directory = os.path.dirname(os.path.abspath(targets[0][1]))
    try:
        free_bytes = shutil.disk_usage(directory).free
        free = f"; {size_text(free_bytes)} is free there"
    except OSError:
        free_bytes, free = None, ""
    needs = f"It needs about {size_text(size)}{' at most (uncompressed)' if compressed else ''}{free}."
    known = _write_failure_reason(text, size, free_bytes, [path for _, path in targets])
    if known is None:
        reason, advice = f"the data could not be written ({message})", "Check the disk, or choose another folder."
    else:
        reason, advice = known
    what = " or ".join(f"{name} '{path}'" for name, path in targets)
    return OutputError(f"Could not write {what}: {reason}. {needs} {advice}")


# ------------------------------------------------------------------ the commit group


class CommitGroup:
    """The files of one run: each written under a temporary name beside its destination, all put in place by
    ``commit`` once every one is complete, all removed by ``abort`` (or on leaving a ``with`` block with an
    exception). ``AtomicRaster(..., group=group)`` writes a GeoTIFF in the group; ``write_file`` a whole file."""

    def __init__(self, destinations: Iterable[Destination] = (), inputs: Mapping[str, str] | None = None,
                 progress: Progress | None = None):
        """A group for ``destinations`` (their parameters name them in messages); ``inputs``: {parameter: path} of
        the run's input rasters, whose styles are theirs; ``progress`` is warned of styles left alone."""
        self._names = {os.path.abspath(d.path): d.name for d in destinations}
        self._inputs = dict(inputs or {})
        self._progress = progress
        self._open = []  # written now, not staged yet: objects with .abort(), .name, .path, .size
        self._staged = []  # (temporary path, destination, stale sidecars to remove)

    def name_of(self, path: str, default: str = "the output") -> str:
        """The parameter of the destination ``path``, or ``default``."""
        return self._names.get(os.path.abspath(path), default)

    def track(self, item: Any) -> None:
        """Remove ``item`` (with .abort(), .name, .path, .size) on abort until it is staged."""
        self._open.append(item)

    def stage(self, temp: str, path: str, stale: Iterable[str] = ()) -> None:
        """``temp`` is complete: it replaces ``path`` (and removes ``path`` + each of ``stale``) at commit."""
        self._open = [item for item in self._open if getattr(item, "temp_path", None) != temp]
        self._staged.append((temp, path, tuple(stale)))

    def temporary(self, path: str, suffix: str | None = None, temp: str | None = None) -> str:
        """A temporary name beside ``path`` for a file that other code writes (OGR, SQLite), or ``temp``, a name that
        code makes from another (a CSV's .csvt): ``abort`` removes it (with GDAL's .aux.xml and SQLite's journals),
        ``stage`` then ``commit`` put it in place. ``suffix``: the temporary name's extension (default: ``path``'s)."""
        temp = temp or temporary_path(path, os.path.splitext(path)[1] if suffix is None else suffix)
        self.track(_Temporary(self.name_of(path), path, temp))
        return temp

    def write_file(self, path: str, data: bytes, what: str | None = None) -> str:
        """Write ``data`` (bytes) under a temporary name beside ``path`` now; it replaces ``path`` at commit.

        Returns
        -------
        str
            ``path``.

        Raises
        ------
        OutputError
            The data could not be written (``what``, default its parameter, names it).
        """
        what = what or self.name_of(path)
        temp = temporary_path(path, os.path.splitext(path)[1])
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
            written = os.path.getsize(temp)
        except OSError as error:
            _remove(temp)
            raise write_failure([(what, path)], error.strerror or str(error), len(data)) from None
        if written != len(data):
            _remove(temp)
            raise write_failure([(what, path)], f"short write: {written} of {len(data)} bytes", len(data))
        self.stage(temp, path)
        return path

    def write_sidecar(self, raster_path: str, path: str, data: bytes, is_ours: Callable[[str], bool],
                      what: str = "the QGIS style") -> str | None:
        """Write a sidecar file of destination ``raster_path`` unless ``path`` belongs to someone else: a file
        that ``is_ours(path)`` does not recognise (a user's own style), a folder, or an input's sidecar.
        Then nothing is written, the user is warned, and None returned; else ``path``."""
        reason = None
        for name, source in self._inputs.items():
            if _same_file(style_path(source), path):
                reason = f"it is the style of {name} '{source}'"
                break
        if reason is None and os.path.isdir(path):
            reason = "it is a folder"
        elif reason is None and os.path.lexists(path) and not is_ours(path):
            reason = "that file was not written by Map Segmenter (it has no map_segmenter mark), so it is kept"
        if reason is not None:
            owner = self.name_of(raster_path)
            if self._progress is not None:
                self._progress.warn(
                    f"{what[0].upper()}{what[1:]} of {owner} would have gone to '{path}', but {reason}. Nothing "
                    f"was written there; the colour table and metadata of '{raster_path}' still style it."
                )
            return None
        return self.write_file(path, data, what)

    def commit(self) -> None:
        """Put every staged file in place (renames in the destinations' folders: quick, and nothing left to
        fail for want of space).

        Raises
        ------
        RuntimeError
            A file of the group is still being written (not staged).
        OSError
            A rename failed; ``abort`` then removes the files not yet in place.
        """
        if self._open:
            raise RuntimeError(f"outputs still being written: {[item.path for item in self._open]}")
        while self._staged:  # on a failed rename, ``abort`` removes the files not yet in place
            put_in_place(*self._staged[0])
            self._staged.pop(0)

    def abort(self) -> None:
        """Remove every file of the run written so far; the destinations are left as they were."""
        opened, self._open = self._open, []
        staged, self._staged = self._staged, []
        for item in reversed(opened):
            item.abort()
        for temp, _, _ in staged:
            _remove_partial(temp)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.abort()  # anything not committed by now is not wanted
            return False
        writing = list(self._open)
        self.abort()
        if issubclass(kind, RuntimeError) and is_write_failure(value) and writing:
            # GDAL writes cached blocks whenever its cache is full, even while reading another file: such an
            # error may surface anywhere, and concerns one of the files being written.
            raise write_failure([(item.name, item.path) for item in writing], value,
                                sum(item.size for item in writing), compressed=True) from None
        return False


@dataclass
class _Temporary:
    """A file of the group written by other code under ``temp_path`` (``CommitGroup.temporary``)."""

    name: str
    path: str
    temp_path: str

    @property
    def size(self):
        return _size(self.temp_path)

    def abort(self):
        _remove_partial(self.temp_path)


def put_in_place(temp: str, path: str, stale: Iterable[str] = ()) -> None:
    """Rename the complete file ``temp`` to ``path``, first removing ``path`` + each suffix of ``stale`` (sidecars
    that describe the data being replaced), and moving GDAL's .aux.xml of ``temp`` along."""
    for suffix in stale:
        _remove(path + suffix)
    os.replace(temp, path)
    if os.path.exists(temp + PAM_SUFFIX):
        os.replace(temp + PAM_SUFFIX, path + PAM_SUFFIX)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _remove_partial(temp):
    """Remove the temporary file ``temp`` and what GDAL (.aux.xml) and SQLite (journals) keep beside it."""
    for suffix in ("", PAM_SUFFIX, *SQLITE_SIDECARS):
        _remove(temp + suffix)
