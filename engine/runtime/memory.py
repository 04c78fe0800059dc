"""Peak memory that follows MEMORY_MB, not the raster: GDAL's block cache, its pool of open VRT sources and freed
heap memory.

Measured on VRT mosaics of 25 MPix to 1 GPix (bench/bench_memory.py), three things besides the windows grew with
the raster:

- GDAL's block cache (GDAL_CACHEMAX: 5 % of RAM by default) filled with decoded blocks of the input. Flushing it
  after every window (as the engine did) bounded it but made GDAL decode every compressed block again for each
  window that touched it: 6.6x slower with thin windows. ``block_cache`` caps it instead for the duration of a
  run, so GDAL keeps the blocks around the current windows and decodes each about once.
- glibc's heap: GDAL's cached blocks (64 KB to 2 MB) and the windows' arrays, freed in another order than they
  were allocated, leave free holes that glibc keeps; the process grew by about 1 MB per MPix. ``release_freed``
  (``malloc_trim``, called at most a few times a second from ``Progress.update``) gives them back.
- GDAL's pool of open datasets: a VRT keeps up to GDAL_MAX_DATASET_POOL_SIZE (100) of its sources open, about
  0.5 MB each for JPEG-tiled GeoTIFFs (their decoded block buffer, libjpeg's and libtiff's state): +45 MB at
  1 GPix (176 sources) against 6 sources at 25 MPix. GDAL's own: gdal_translate of the same VRTs with a 64 MB
  cache grows from 123 to 160 MB (143 with a pool of 32). ``dataset_pool`` lowers it to MEMORY_MB / POOL_SHARE_MB
  sources for the run.
"""

import ctypes
import ctypes.util
import functools
import inspect
import threading
import time
from contextlib import contextmanager

from osgeo import gdal

CACHE_SHARE = 4  # GDAL's block cache may take this share (1/4) of MEMORY_MB during a run
MIN_CACHE_MB = 4
TRIM_INTERVAL = 0.25

_cache_lock = threading.Lock()
_cache_runs = []  # the caps (bytes) of the runs in progress
_cache_before = []  # GDAL's own setting before the first of them


@contextmanager
def thread_config(name, value):
    """GDAL configuration option ``name`` set to ``value`` in this thread for the duration (None: no change)."""
    if value is None:
        yield
        return
    before = gdal.GetThreadLocalConfigOption(name)
    gdal.SetThreadLocalConfigOption(name, str(value))
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption(name, before)


@contextmanager
def block_cache(memory_mb):
    """GDAL's block cache capped at ``memory_mb / CACHE_SHARE`` MB (at least MIN_CACHE_MB) during a run.

    Runs that overlap (threads of QGIS) share the largest of their caps; the cap is never above GDAL's own setting,
    which comes back when the last run ends. An unusable ``memory_mb`` leaves the cache alone (the run refuses
    it)."""
    try:
        cap = int(max(MIN_CACHE_MB, float(memory_mb) / CACHE_SHARE) * 2**20)
    except (TypeError, ValueError, OverflowError):
        cap = None
    if cap is None:
        yield
        return
    with _cache_lock:
        if not _cache_runs:
            _cache_before[:] = [gdal.GetCacheMax()]
        _cache_runs.append(cap)
        gdal.SetCacheMax(min(_cache_before[0], max(_cache_runs)))
    try:
        yield
    finally:
        with _cache_lock:
            _cache_runs.remove(cap)
            gdal.SetCacheMax(min(_cache_before[0], max(_cache_runs)) if _cache_runs else _cache_before[0])


POOL_VARIABLE = "GDAL_MAX_DATASET_POOL_SIZE"
GDAL_POOL = 100  # GDAL's default; it takes 2..1000
POOL_SHARE_MB = 8  # one open VRT source per 8 MB of MEMORY_MB: 32 at the default 256, within 1/16 of it at 0.5 MB
MIN_POOL = 8  # small budgets' tile windows with their halo touch a few sources (2 x 2, 3 x 2): keep them open


def pool_size(memory_mb):
    """The most sources of a VRT GDAL keeps open during a run with ``memory_mb``: MEMORY_MB / POOL_SHARE_MB, at
    least MIN_POOL, never above GDAL's own setting (GDAL_MAX_DATASET_POOL_SIZE, 100 by default)."""
    try:
        own = int(gdal.GetConfigOption(POOL_VARIABLE) or GDAL_POOL)
    except ValueError:
        own = GDAL_POOL
    own = own if 2 <= own <= 1000 else GDAL_POOL  # what GDAL does with other values
    return min(own, max(MIN_POOL, int(float(memory_mb) // POOL_SHARE_MB)))


@contextmanager
def dataset_pool(memory_mb):
    """GDAL_MAX_DATASET_POOL_SIZE = ``pool_size(memory_mb)`` in this thread during a run, then as before.

    GDAL reads it when it creates its pool, with the first VRT opened while none is open; the pool goes when the
    last one is closed. The run opens its input inside, so a VRT input keeps at most that many sources open,
    unless the process already has a VRT open (a QGIS layer): that pool, and its size, are shared."""
    try:
        size = pool_size(memory_mb)
    except (TypeError, ValueError, OverflowError):
        size = None
    with thread_config(POOL_VARIABLE, size):
        yield


def within_budget(function):
    """Decorator: the engine entry point (which takes ``memory_mb``) runs inside ``block_cache(memory_mb)``
    and ``dataset_pool(memory_mb)``."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            memory_mb = bound.arguments.get("memory_mb")
        except TypeError:  # the call itself is wrong: Python says so when the function is called
            memory_mb = None
        with block_cache(memory_mb), dataset_pool(memory_mb):
            return function(*args, **kwargs)

    return run


def block_alignment(raster):
    """``plan_windows`` arguments for windows over ``raster`` (an ``InputRaster``), during a run.

    When GDAL's (capped) cache holds two rows of the input's blocks, windows that cut a block row in two cost
    nothing: GDAL decodes it once for both, and windows can take the whole budget whatever the raster's shape (so
    the peak memory is the same for every raster). Otherwise windows follow the input's blocks: strips of whole
    block rows, or tiles of whole blocks when a strip of one block row does not fit (small MEMORY_MB, wide rasters),
    so each compressed block is decoded about once rather than once for every thin strip that crosses it."""
    itemsize = gdal.GetDataTypeSize(raster.data_type) // 8
    row_bytes = raster.width * raster.block_height * len(set(raster.bands)) * itemsize
    if 2 * row_bytes <= gdal.GetCacheMax():
        return {}
    return dict(row_step=raster.block_height, col_step=raster.block_width)


def _malloc_trim():
    """glibc's malloc_trim, or None (other C libraries, macOS, Windows: nothing to do)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_trim = _malloc_trim()
_last_trim = [0.0]


def release_freed():
    """Give freed heap memory back to the system, at most every TRIM_INTERVAL seconds (a few ms each)."""
    if _trim is None:
        return
    now = time.monotonic()
    if now - _last_trim[0] >= TRIM_INTERVAL:
        _last_trim[0] = now
        _trim(0)
