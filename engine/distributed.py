"""Windows as tasks on a Dask cluster (``dask.distributed``), with the same pixels as a run in this process.

A run given ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``, or a ``distributed.Client``) keeps its
global steps here: the seeded sample, the centre fit, the index and the calibration, and the writing of every
output through the run's ``AtomicRaster``/``CommitGroup`` (this process stays the single writer, in window order,
so the atomic commit holds and the bytes do not depend on the number of workers, their order or a retry).
Only the per-window work becomes tasks, each a pure function of (input path, window, fitted model, settings):

* ``Cluster.ordered_map(function, items, *arguments)``: ``function(item, *arguments)`` runs on a worker, which
  opens the input itself (``RasterSource.open``, cached per worker thread) and returns the window's result;
* ``Cluster.mapper(read, compute, items)``: the drop-in for ``pipeline.ordered_map`` where the data lives only
  here (cnn's feature raster, for its label pass): ``read`` runs here, ``compute`` on a worker, as many windows
  in flight as in a local run (this process holds them), so that pass is bound by this process's reads.

Results come back in item order, at most ``IN_FLIGHT_PER_THREAD`` tasks per worker thread in flight; the
progress bar moves as windows complete, and a cancel cancels every outstanding future at once. A worker that
dies mid-run has its tasks run elsewhere by the scheduler (a task is pure: the retry gives the same bytes).

Storage contract: the workers open INPUT (and LABELS, FEATURES for the post-processing steps, MASK) under the
same path as this process: a shared file system, or GDAL virtual file systems (/vsis3/, /vsicurl/...) whose
credentials every worker has. Outputs are written by this process only. Workers import ``map_segmenter`` from
their own installation; ``connect`` compares the engine's version and source hash (and numpy's and GDAL's
versions) on every worker with this process's and refuses a mismatch, naming the workers.

``distributed`` is optional: without a scheduler nothing here is imported; with one and without the package the
user gets the exact command that installs it for the Python QGIS runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from .errors import Cancelled, ClusterError, InputError, SegmenterError
from .memory import block_cache, release_freed
from .onnx_runtime import python_executable
from .pipeline import WORKERS
from .raster_io import open_input

TIMEOUT = 10.0  # s: connecting, waiting for workers, and a scheduler or cluster that stops answering
IN_FLIGHT_PER_THREAD = 2  # tasks submitted ahead per worker thread: workers never wait, memory stays bounded
POLL = 0.1  # s between checks of cancel and of the cluster's health while a result is awaited
PACKAGES = "dask[distributed]"
OPEN_CACHE = 4  # rasters kept open per worker thread
ENGINE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------ the optional dependency


def install_command():
    """The exact command that installs Dask's distributed scheduler for the Python QGIS runs."""
    python = python_executable()
    quoted = f'"{python}"' if " " in python else python
    return f'{quoted} -m pip install "{PACKAGES}"'


def install_message():
    return (
        "Running on a Dask cluster (SCHEDULER) needs the Python package distributed, which is not installed for "
        f"the Python that QGIS runs ({python_executable()}). Install it with:\n    {install_command()}\n"
        "then restart QGIS, or leave SCHEDULER empty to run in this process. Every worker needs the same package "
        "and the same Map Segmenter version."
    )


def import_distributed():
    """The ``distributed`` module, or an ``InputError`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise InputError(install_message()) from None
    return distributed


# ------------------------------------------------------------------ versions


def engine_fingerprint():
    """What must be equal on the workers and here for byte-identical results: the plugin's version, a hash of the
    engine's source files, numpy's and GDAL's versions."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(ENGINE)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(os.path.join(ENGINE, name), "rb") as handle:
                digest.update(handle.read())
    version = "unknown"
    metadata = os.path.join(os.path.dirname(ENGINE), "metadata.txt")
    if os.path.isfile(metadata):
        with open(metadata, encoding="utf-8") as handle:
            version = next((line.split("=", 1)[1].strip() for line in handle if line.startswith("version=")),
                           version)
    return dict(map_segmenter=version, engine_sha256=digest.hexdigest()[:16], numpy=np.__version__,
                gdal=gdal.__version__)


def _fingerprint_text(fingerprint):
    return ", ".join(f"{key} {value}" for key, value in fingerprint.items())


# ------------------------------------------------------------------ inputs opened on the workers


@dataclass(frozen=True)
class RasterSource:
    """How a worker opens the input raster as ``raster_io.open_input`` opened it here."""

    path: str
    bands: tuple = None
    region: object = None  # engine.region.Region
    grey_as_rgb: bool = False

    def open(self):
        return cached(("input", self.path, self.bands, self.region, self.grey_as_rgb),
                       lambda: open_input(self.path, list(self.bands) if self.bands else None,
                                          grey_as_rgb=self.grey_as_rgb, region=self.region),
                       self.path, self.region.mask_path if self.region else None)


_local = threading.local()


def _stamp(path):
    """What tells a file apart from its replacement: size and modification time (GDAL's, so /vsis3/ too)."""
    if not path:
        return None
    stat = gdal.VSIStatL(path)
    return None if stat is None else (stat.size, stat.mtime)


def cached(key, opener, *paths):
    """``opener()``, kept open per worker thread (a GDAL dataset is not thread-safe) while the files are the same."""
    cache = getattr(_local, "opened", None)
    if cache is None:
        cache = _local.opened = OrderedDict()
    key = (key, tuple(_stamp(path) for path in paths))
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = opener()
    while len(cache) > OPEN_CACHE:
        cache.popitem(last=False)
    return value


def model_file(data, sha256, name):
    """A worker-local copy of a model shipped as bytes (the plugin's folder may lie elsewhere on a worker)."""
    folder = os.path.join(tempfile.gettempdir(), "segmenter-models", sha256)
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        temp = f"{path}.{os.getpid()}.{threading.get_ident()}.part"
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    return path


# ------------------------------------------------------------------ the cluster


def _compute(compute, arguments):
    """Worker side of ``Cluster.mapper``: ``compute(*arguments)``."""
    return compute(*arguments)


def _task(function, memory_mb, *arguments):
    """Every task on a worker: ``function(*arguments)`` with GDAL's block cache capped as in a local run of
    MEMORY_MB (``memory.block_cache``; by default GDAL keeps 5 % of the machine's RAM of decoded blocks per worker
    process), freed heap memory given back afterwards."""
    with block_cache(memory_mb):
        result = function(*arguments)
    release_freed()
    return result


class Cluster:
    """A connected ``distributed.Client`` and the run's progress: submits windows, yields results in order."""

    def __init__(self, client, address, owned, progress, timeout, memory_mb=256):
        self.client, self.address, self.owned, self.progress, self.timeout = client, address, owned, progress, timeout
        self.memory_mb = memory_mb  # each worker thread's budget, as MEMORY_MB is this process's
        self.run_id = uuid.uuid4().hex[:8]
        self._maps = 0
        self.threads = max(1, sum(client.nthreads().values()))

    @property
    def workers(self):
        return len(self.client.nthreads())

    def share(self, value):
        """``value`` sent once to every worker; pass the returned future as a task argument."""
        return self.client.scatter(value, broadcast=True, hash=False)

    def ordered_map(self, function, items, *arguments, name=None):
        """Yield ``(item, function(item, *arguments))`` in the order of ``items``, computed on the workers."""
        return self._run(((item, (item, *arguments)) for item in items), function, name)

    def mapper(self, read, compute, items, workers=WORKERS):
        """``pipeline.ordered_map`` with ``compute`` on the workers: ``read(item)`` runs here (the one thread that
        touches this process's datasets), its result is sent with the task. At most ``workers + 1`` items are in
        flight, as in a local run: the windows were planned for that many of them in this process's MEMORY_MB."""
        return self._run(((item, (compute, read(item))) for item in items), _compute, "compute", workers + 1)

    def _run(self, pairs, function, name, limit=None):
        self._maps += 1
        kind = (name or getattr(function, "__name__", "task")).removesuffix("_task").replace("_", "")
        # dask's key_split (dashboard, metrics) names the tasks by kind: segmenter-descriptors, segmenter-label...
        # (a kind of 8 letters a-f first would be taken for a hex token)
        prefix = f"segmenter-{kind}-{self.run_id}-{self._maps}"
        pending = deque()
        limit = limit or max(2, IN_FLIGHT_PER_THREAD * self.threads)
        number = 0
        pairs = iter(pairs)
        try:
            while True:
                while len(pending) < limit:
                    pair = next(pairs, None)
                    if pair is None:
                        break
                    item, arguments = pair
                    self.progress.check()
                    future = self.client.submit(_task, function, self.memory_mb, *arguments,
                                                key=f"{prefix}-{number}", pure=False, retries=0)
                    number += 1
                    pending.append((item, future))
                if not pending:
                    return
                item, future = pending[0]
                result = self._result(future)
                pending.popleft()
                yield item, result
        finally:
            if pending:
                with contextlib.suppress(Exception):  # a cluster already gone: nothing left to cancel
                    self.client.cancel([future for _, future in pending], force=True)

    def _result(self, future):
        """The future's result, checking cancel every POLL s and that the cluster still answers."""
        failing_since = None
        finished = threading.Event()
        future.add_done_callback(lambda _: finished.set())
        while True:
            self.progress.check()
            if finished.wait(POLL) or future.done():
                break
            if self.client.status != "running":
                problem = (f"The connection to the Dask scheduler at {self.address} was lost "
                           f"({self.client.status}) and not restored within {self.timeout:g} s")
            elif not self.client.scheduler_info().get("workers"):
                problem = (f"The Dask cluster at {self.address} has had no workers for {self.timeout:g} s (start "
                           f"some: dask worker {self.address})")
            else:
                problem = None
            failing_since = None if problem is None else (failing_since or time.monotonic())
            if failing_since is not None and time.monotonic() - failing_since > self.timeout:
                raise ClusterError(f"{problem}; no output was written.")
        try:
            return future.result()
        except SegmenterError:
            raise
        except Exception as error:
            if self.client.status != "running" or "connection-lost" in str(error):
                raise ClusterError(f"The connection to the Dask scheduler at {self.address} was lost during the run "
                                   f"(the scheduler stopped, or the network failed); no output was written. Run "
                                   f"again once the scheduler answers, or leave SCHEDULER empty.") from None
            raise ClusterError(f"A task failed on the Dask cluster at {self.address}: {type(error).__name__}: "
                               f"{error}. No output was written.") from None

    def close(self):
        if self.owned:
            with contextlib.suppress(Exception):  # closing a client whose cluster is already gone
                self.client.close(timeout=self.timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def connect(scheduler, progress, memory_mb=256, timeout=None):
    """A ``Cluster`` for ``scheduler`` (an address or a ``distributed.Client``), or None for empty (this process).

    ``memory_mb``: the run's MEMORY_MB, each worker thread's budget too (its windows are planned for it). Checks
    within ``timeout`` seconds (default ``TIMEOUT``) that the scheduler answers and has workers, and that
    every worker runs this engine (``engine_fingerprint``); raises ``ClusterError`` (or ``InputError`` without the
    package) otherwise."""
    if scheduler is None or (isinstance(scheduler, str) and not scheduler.strip()):
        return None
    distributed = import_distributed()
    timeout = TIMEOUT if timeout is None else timeout
    if isinstance(scheduler, distributed.Client):
        client, owned = scheduler, False
        address = getattr(client.scheduler, "address", None) or str(client)
    else:
        address = str(scheduler).strip()
        if "://" not in address:
            address = f"tcp://{address}"
        started = time.monotonic()
        try:
            # results come through the scheduler unless dask's config says distributed.client.direct-to-workers
            client = distributed.Client(address, timeout=f"{timeout}s", set_as_default=False)
        except Exception as error:
            raise ClusterError(
                f"Could not reach the Dask scheduler at {address} within {timeout:g} s "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no answer'}); no output "
                f"was written. Check SCHEDULER (e.g. tcp://10.0.0.5:8786) and that `dask scheduler` runs there, or "
                f"leave it empty to run in this process.") from None
        owned = True
        timeout = max(1.0, timeout - (time.monotonic() - started))
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except Exception:
            raise ClusterError(f"The Dask scheduler at {address} has no workers (waited {timeout:g} s); no output "
                               f"was written. Start some with: dask worker {address}") from None
        cluster = Cluster(client, address, owned, progress, timeout, memory_mb)
        _check_versions(client, address)
    except BaseException:
        if owned:
            client.close()
        raise
    progress.log(f"Dask cluster at {address}: {cluster.workers} workers, {cluster.threads} threads")
    return cluster


def _check_versions(client, address):
    here = engine_fingerprint()
    try:
        theirs = client.run(engine_fingerprint)
    except Exception as error:
        raise ClusterError(
            f"The Dask workers at {address} cannot run Map Segmenter's engine ({type(error).__name__}: {error}). "
            f"Install this version on every worker (pip install -e <plugin folder>, or the same release).") from None
    wrong = {worker: print_ for worker, print_ in theirs.items() if print_ != here}
    if wrong:
        lines = "; ".join(f"{worker}: {_fingerprint_text(print_)}" for worker, print_ in sorted(wrong.items()))
        raise ClusterError(
            f"{len(wrong)} of {len(theirs)} Dask workers at {address} run another Map Segmenter engine than this "
            f"process ({_fingerprint_text(here)}): {lines}. Results would differ from a local run: install the same "
            f"version on every worker and restart them.")


__all__ = ["Cancelled", "Cluster", "ClusterError", "RasterSource", "cached", "connect", "engine_fingerprint",
           "import_distributed", "install_command", "model_file"]
