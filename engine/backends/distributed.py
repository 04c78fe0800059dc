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

import asyncio
import concurrent.futures
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

from ..rasters.raster_io import open_input
from ..runtime import params
from ..runtime.errors import Cancelled, ClusterError, InputError, SegmenterError
from ..runtime.memory import block_cache, release_freed
from ..runtime.pipeline import WORKERS
from .onnx_runtime import python_executable

TIMEOUT = 10.0  # s: connecting, waiting for workers, and a scheduler or cluster that stops answering
IN_FLIGHT_PER_THREAD = 2  # tasks submitted ahead per worker thread: workers never wait, memory stays bounded
POLL = 0.1  # s between checks of cancel and of the cluster's health while a result is awaited
PACKAGES = "dask[distributed]"
OPEN_CACHE = 4  # rasters kept open per worker thread
ENGINE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # engine/, above this sub-package


# ------------------------------------------------------------------ the optional dependency


def install_command():
    """The exact command that installs Dask's distributed scheduler for the Python QGIS runs."""
    python = python_executable()
    quoted = f'"{python}"' if " " in python else python
    return f'{quoted} -m pip install "{PACKAGES}"'


def install_message():
    return (
        f"Running on a Dask cluster ({params.SCHEDULER}) needs the Python package distributed, which is not "
        f"installed for the Python that QGIS runs ({python_executable()}). Install it with:\n    {install_command()}\n"
        f"then restart QGIS, or leave {params.SCHEDULER} empty to run in this process. Every worker needs the same "
        "package and the same Map Segmenter version."
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
    sources = sorted(os.path.relpath(os.path.join(folder, name), ENGINE).replace(os.sep, "/")
                     for folder, _, files in os.walk(ENGINE) for name in files if name.endswith(".py"))
    for name in sources:  # every sub-package's modules
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
    region: object = None  # engine.rasters.region.Region
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


class NoAnswer(Exception):
    """A wait on the scheduler that ran out of time (``wait_on``); the caller says what did not answer."""


def wait_on(loop, make, progress, timeout, watch=None):
    """The one way this process waits on a Dask scheduler: ``make()`` (called on ``loop``, the client's event loop,
    so that the client's methods give their coroutines) runs there while this thread checks cancel every POLL s.

    ``timeout``: seconds after which ``NoAnswer`` is raised (None: no limit). ``watch``: called every POLL s while
    waiting, raises when the cluster is no longer usable (``Cluster._watch``). Whatever the other end does (accepts
    and says nothing, sends garbage, closes midway), this returns, raises the coroutine's exception, ``NoAnswer``
    or ``Cancelled`` within POLL s of the limit or the cancel; the coroutine is cancelled on the loop then."""

    async def run():
        return await make()

    future = asyncio.run_coroutine_threadsafe(run(), loop)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            left = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
            concurrent.futures.wait([future], timeout=left)
            if future.done():
                return future.result()
            progress.check()
            if watch is not None:
                watch()
            if deadline is not None and time.monotonic() >= deadline:
                raise NoAnswer()
    finally:
        if not future.done():
            future.cancel()


def _reason(error):
    """What a failed wait on the scheduler tells the user: no answer, the connection refused or closed, or not Dask's
    protocol (garbage). distributed retries a closed connection until its timeout and then raises an OSError whose
    cause is the last failure: the chain is followed."""
    while isinstance(error, OSError) and "Timed out trying to connect" in str(error):
        error = error.__cause__
    if error is None or isinstance(error, (NoAnswer, asyncio.TimeoutError, TimeoutError)):
        return "no answer"
    if isinstance(error, ConnectionRefusedError) or isinstance(error, OSError) and "refused" in str(error).lower():
        return "connection refused"
    if isinstance(error, OSError):  # distributed's CommClosedError is one
        return "the connection was closed by the other end"
    return "it answered, but not as a Dask scheduler"


class Cluster:
    """A connected ``distributed.Client`` and the run's progress: submits windows, yields results in order.

    Every wait on the scheduler goes through ``wait_on`` on the client's event loop: bounded by ``timeout`` (a
    scheduler or cluster that stops answering) and stopped within POLL s by cancel."""

    def __init__(self, client, address, owned, progress, timeout, memory_mb, loop, nthreads):
        self.client, self.address, self.owned, self.progress, self.timeout = client, address, owned, progress, timeout
        self.memory_mb = memory_mb  # each worker thread's budget, as MEMORY_MB is this process's
        self.loop = loop  # an event loop owned by this run (a client given by the caller keeps its own)
        self.run_id = uuid.uuid4().hex[:8]
        self._maps = 0
        self.workers = len(nthreads)
        self.threads = max(1, sum(nthreads.values()))
        self._probe = None
        self._answered = self._failing = None

    @property
    def event_loop(self):
        return self.loop or self.client.loop.asyncio_loop

    def call(self, make, what, timeout=None):
        """``make()`` awaited on the client's loop within ``timeout`` (default the cluster's); a ``ClusterError``
        saying the scheduler ``what`` (e.g. "did not list its workers") otherwise."""
        timeout = self.timeout if timeout is None else timeout
        try:
            return wait_on(self.event_loop, make, self.progress, timeout)
        except (SegmenterError, KeyboardInterrupt):
            raise
        except (Exception, asyncio.CancelledError) as error:
            raise self.unanswered(what, timeout, error) from None

    def unanswered(self, what, timeout, error):
        """The ClusterError for a wait on the scheduler that ``error`` ended (``what`` it did not do)."""
        return ClusterError(f"The Dask scheduler at {self.address} {what} within {timeout:g} s ({_reason(error)}); "
                            f"no output was written. Run again once the scheduler answers, or leave "
                            f"{params.SCHEDULER} empty to run in this process.")

    def share(self, value):
        """``value`` sent once to every worker; pass the returned future as a task argument."""
        return self._wait(lambda: self.client.scatter(value, broadcast=True, hash=False), "sending data")

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
                    # submit only queues a message on the client's loop: it does not wait on the scheduler
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
                # cancel only sends a message; bounded anyway. A cluster already gone: nothing left to cancel
                with contextlib.suppress(Exception):
                    self.call(lambda: self.client.cancel([future for _, future in pending], force=True),
                              "did not take the cancel", timeout=min(self.timeout, 5 * POLL))

    def _watch(self):
        """Raise ``ClusterError`` once the scheduler has not answered a probe (one every POLL s at most, never
        waited on) for ``timeout`` s, or the connection has been lost or the cluster without workers for as long."""
        now = time.monotonic()
        workers = True
        if self._probe is not None and self._probe.done():
            try:
                workers = bool(self._probe.result().get("workers"))
                self._answered = now
            except (Exception, asyncio.CancelledError):
                pass
            self._probe = None
        if self._probe is None:
            async def identity():
                return await self.client.scheduler.identity(n_workers=-1)
            self._probe = asyncio.run_coroutine_threadsafe(identity(), self.event_loop)
        if self.client.status != "running":
            problem = (f"The connection to the Dask scheduler at {self.address} was lost "
                       f"({self.client.status}) and not restored within {self.timeout:g} s")
        elif now - self._answered > self.timeout:
            problem = f"The Dask scheduler at {self.address} has not answered for {self.timeout:g} s"
        elif not workers:
            problem = (f"The Dask cluster at {self.address} has had no workers for {self.timeout:g} s (start "
                       f"some: dask worker {self.address})")
        else:
            problem = None
        self._failing = None if problem is None else (self._failing or now)
        if problem is not None and (now - self._failing > self.timeout or now - self._answered > self.timeout):
            raise ClusterError(f"{problem}; no output was written.")

    def _wait(self, make, what):
        """``make()`` awaited on the client's loop for as long as the cluster stays usable (``_watch``)."""
        self._answered, self._failing = time.monotonic(), None
        try:
            return wait_on(self.event_loop, make, self.progress, None, self._watch)
        except SegmenterError:
            raise
        except (Exception, asyncio.CancelledError) as error:
            if self.client.status != "running" or "connection-lost" in str(error):
                raise ClusterError(f"The connection to the Dask scheduler at {self.address} was lost during the run "
                                   f"(the scheduler stopped, or the network failed); no output was written. Run "
                                   f"again once the scheduler answers, or leave {params.SCHEDULER} empty.") from None
            raise ClusterError(f"{what.capitalize()} failed on the Dask cluster at {self.address}: "
                               f"{type(error).__name__}: {error}. No output was written.") from None
        finally:
            if self._probe is not None:
                self._probe.cancel()
                self._probe = None

    def _result(self, future):
        """The future's result (gathered: the task's completion and the transfer), checking cancel every POLL s and
        that the cluster still answers."""
        return self._wait(lambda: self.client.gather(future), "a task")

    def close(self):
        """Close the client (if this run opened it) and its loop; bounded by the timeout, at most 1 s after a
        cancel."""
        if self.owned:
            _close(self.client, self.loop, self.address, min(self.timeout, 1.0))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _start_loop():
    """An asyncio event loop running in a daemon thread: the loop of the clients this process opens."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="segmenter-dask-loop", daemon=True)
    thread.start()
    return loop, thread


def _close(client, loop, address, timeout):
    """Close ``client`` on ``loop`` within ``timeout`` s whatever the scheduler does, then stop the loop."""
    if loop is None or loop.is_closed():
        return

    async def shut():
        try:
            if client is not None and client.status not in ("closed", "newly-created"):
                await asyncio.wait_for(client.close(timeout=timeout), timeout)
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            if client is not None:
                client.status = "closed"  # nothing left for its __del__ to do (it would wait on this loop)
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.wait(others, timeout=timeout) if others else None

    try:
        concurrent.futures.wait([asyncio.run_coroutine_threadsafe(shut(), loop)], timeout=timeout + 0.5)
    finally:
        loop.call_soon_threadsafe(loop.stop)


def connect(scheduler, progress, memory_mb=256, timeout=None):
    """A ``Cluster`` for ``scheduler`` (an address or a ``distributed.Client``), or None for empty (this process).

    ``memory_mb``: the run's MEMORY_MB, each worker thread's budget too (its windows are planned for it). Checks
    within ``timeout`` seconds (default ``TIMEOUT``) that the scheduler answers and has workers, and that
    every worker runs this engine (``engine_fingerprint``); raises ``ClusterError`` (or ``InputError`` without the
    package) otherwise. Every wait is bounded by ``timeout`` and stopped by cancel within POLL s (``wait_on``)."""
    if scheduler is None or (isinstance(scheduler, str) and not scheduler.strip()):
        return None
    distributed = import_distributed()
    timeout = TIMEOUT if timeout is None else timeout
    started = time.monotonic()
    loop = client = None
    if isinstance(scheduler, distributed.Client):
        client, owned = scheduler, False
        address = getattr(client.scheduler, "address", None) or str(client)
    else:
        address = str(scheduler).strip()
        if "://" not in address:
            address = f"tcp://{address}"
        owned = True
        loop, _ = _start_loop()
        opened = []

        async def open_client():
            # built on this run's loop, so that waiting for it never blocks this thread; results come through the
            # scheduler unless dask's config says distributed.client.direct-to-workers
            # (distributed's own timeout well inside this wait, so that its reason (refused, closed, garbage) comes
            # first even on a busy machine: it retries a closed connection until then)
            opened.append(distributed.Client(address, timeout=f"{max(0.5, 0.6 * timeout):g}s", set_as_default=False,
                                             asynchronous=True))
            return await opened[0]

        try:
            client = wait_on(loop, open_client, progress, timeout)
        except BaseException as error:
            _close(opened[0] if opened else None, loop, address, 1.0)
            if isinstance(error, (SegmenterError, KeyboardInterrupt)) or not isinstance(
                    error, (Exception, asyncio.CancelledError)):
                raise
            raise ClusterError(
                f"Could not reach the Dask scheduler at {address} within {timeout:g} s ({_reason(error)}); no "
                f"output was written. Check {params.SCHEDULER} (e.g. tcp://10.0.0.5:8786) and that `dask scheduler` "
                f"runs there, or leave it empty to run in this process.") from None
    left = max(1.0, timeout - (time.monotonic() - started))
    try:
        try:
            nthreads = wait_on(loop or client.loop.asyncio_loop, lambda: _workers(client), progress, left)
        except NoAnswer:
            raise ClusterError(f"The Dask scheduler at {address} has no workers (waited {left:g} s); no output "
                               f"was written. Start some with: dask worker {address}") from None
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, SegmenterError):
                raise
            raise ClusterError(f"The Dask scheduler at {address} did not list its workers within {left:g} s "
                               f"({_reason(error)}); no output was written. Run again once the scheduler answers, "
                               f"or leave {params.SCHEDULER} empty to run in this process.") from None
        cluster = Cluster(client, address, owned, progress, timeout, memory_mb, loop, nthreads)
        _check_versions(cluster)
    except BaseException:
        if owned:
            _close(client, loop, address, 1.0)
        raise
    progress.log(f"Dask cluster at {address}: {cluster.workers} workers, {cluster.threads} threads")
    return cluster


async def _workers(client):
    """The scheduler's workers and their threads, once it has one (asked every POLL s)."""
    while True:
        nthreads = await client.nthreads()
        if nthreads:
            return nthreads
        await asyncio.sleep(POLL)


def _check_versions(cluster):
    client, address = cluster.client, cluster.address
    here = engine_fingerprint()
    try:
        theirs = wait_on(cluster.event_loop, lambda: client.run(engine_fingerprint), cluster.progress, cluster.timeout)
    except (SegmenterError, KeyboardInterrupt):
        raise
    except (NoAnswer, OSError, asyncio.CancelledError) as error:  # the scheduler, not the workers' engine
        raise cluster.unanswered("did not run the version check on its workers", cluster.timeout, error) from None
    except Exception as error:  # raised on a worker: it cannot import or run the engine
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


__all__ = ["Cancelled", "Cluster", "ClusterError", "NoAnswer", "RasterSource", "cached", "connect",
           "engine_fingerprint", "import_distributed", "install_command", "model_file", "wait_on"]
