"""The skeleton every post-processing step runs on: blur, merge, render, statistics and knn_refine.

A step is a ``WindowStep``: what one window of its work is, and nothing about where that work runs.

* ``open()`` opens its inputs (by path: a Dask worker opens them itself, once per worker thread);
* ``read(inputs, window)`` reads what the window needs (GDAL: in this process, the one thread that holds the
  datasets);
* ``compute(window, *data)`` turns it into the window's result (numpy only: any thread, any worker).

An ``Executor``, chosen once per run from SCHEDULER, maps a step over windows and yields ``(window, result)`` in
window order, so whatever the step writes or adds up does not depend on threads, workers or their timing:

* here, reads run in this thread while ``step.workers`` threads compute (the windows were planned for
  ``workers + 1`` of them in flight within MEMORY_MB);
* on a Dask cluster, each task opens, reads and computes on its worker (``step_task``), under the run's memory
  budget, and the results come back in order (``distributed.Cluster.ordered_map``).

Either way it reports "<stage> (n/N windows)" after each window, checks cancel there (and within a window where
the step ticks), and stops every outstanding window when the run stops. Adding a step is one class: see
tests/engine/test_window_step.py, which adds one in the test file and runs it here and on a cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..backends import distributed
from ..rasters.labels import open_label_raster
from ..rasters.windows import Window
from ..runtime.pipeline import WORKERS, ordered_map
from ..runtime.progress import Progress


class WindowStep:
    """One post-processing step, window by window. Subclasses are picklable (dataclasses of paths and settings):
    a cluster sends the step with each task."""

    stage: ClassVar[str] = ""  # the progress stage, and the message "<stage> (n/N windows)"
    workers: ClassVar[int] = WORKERS  # windows computed at once here; 1 where compute holds large buffers
    overlap: ClassVar[bool] = True  # one worker computes while the next window is read (False: in turn)
    ticks: ClassVar[bool] = False  # compute takes ``tick(fraction)`` to report progress within a window

    @classmethod
    def in_flight(cls) -> int:
        """Windows held at once in this process by a local run: what a step's window plan divides MEMORY_MB by."""
        return cls.workers + 1 if cls.workers > 1 or cls.overlap else 1

    @property
    def halo(self) -> int:
        """How far (px) the window's result looks beyond it: ``read`` reads ``window.grown(halo, ...)``."""
        return 0

    @property
    def task_name(self) -> str:
        """The tasks' name on a cluster (its dashboard and metrics): segmenter-<name>-..."""
        return type(self).__name__.removesuffix("Step").lower()

    @property
    def paths(self) -> tuple:
        """The files ``open`` opens: a worker reopens them when they change."""
        return ()

    def open(self) -> Any:
        """The inputs ``read`` reads from (on a worker: opened once per worker thread, kept while the files stay
        the same)."""
        return None

    def read(self, inputs: Any, window: Window) -> tuple:
        """What ``compute`` needs of ``window``, read from ``inputs``: a tuple of arguments."""
        return ()

    def compute(self, window: Window, *data: Any, tick=None) -> Any:
        """The result of ``window`` from what ``read`` returned (numpy only; no dataset is touched here)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LabelStep(WindowStep):
    """A step over the windows of one label raster: ``compute`` gets its ids (by default returns them as they are)."""

    path: str

    @property
    def paths(self):
        return (self.path,)

    def open(self):
        return open_label_raster(self.path)

    def read(self, labels, window):
        ids = labels.read(window)
        labels.release_cache()
        return (ids,)

    def compute(self, window, ids, tick=None):
        return ids


def step_task(window: Window, step: WindowStep) -> Any:
    """Worker side of ``Executor.map`` on a cluster: the step's inputs opened here (cached), one window read and
    computed."""
    inputs = distributed.cached(("step", type(step).__module__, type(step).__qualname__, step.paths), step.open,
                                *step.paths)
    return step.compute(window, *step.read(inputs, window))


class Executor:
    """Runs window steps here or on the Dask cluster at ``scheduler`` (empty or None: here), for the whole run.

    ``memory_mb``: the run's MEMORY_MB, also each worker thread's budget. Use as a context manager (or ``close``):
    a cluster connection is closed with it."""

    def __init__(self, scheduler: Any, progress: Progress, memory_mb: float = 256):
        self.progress = progress
        self.cluster = distributed.connect(scheduler, progress, memory_mb)
        self._reached, self._lock = 0.0, threading.Lock()

    @property
    def on_cluster(self) -> bool:
        return self.cluster is not None

    def map(self, step: WindowStep, windows: Sequence[Window], inputs: Any = None) -> Iterator[tuple[Window, Any]]:
        """Yield ``(window, step's result)`` for ``windows``, in their order, reporting progress after each one has
        been handed over (and dealt with by the caller).

        ``inputs``: the step's inputs opened by the caller (this process); by default ``step.open()``, closed at the
        end. The windows make the whole of the current progress stage."""
        count = len(windows)
        if not count:
            return
        self._reached = 0.0
        results = self._results(step, windows, inputs)
        for number, (window, result) in enumerate(results):
            yield window, result
            result = None  # let go of this window before the next one is read
            self._update((number + 1) / count, f"{step.stage} ({number + 1}/{count} windows)")

    def _results(self, step, windows, inputs):
        if self.cluster is not None:
            yield from self.cluster.ordered_map(step_task, windows, step, name=step.task_name)
            return
        owned = inputs is None
        inputs = step.open() if owned else inputs
        count = len(windows)

        def read(item):
            number, window = item
            return number, window, *step.read(inputs, window)

        def compute(number, window, *data):
            if not step.ticks:
                return step.compute(window, *data)

            def tick(share):
                self._update((number + share) / count, f"{step.stage} ({number + 1}/{count} windows)")

            return step.compute(window, *data, tick=tick)

        try:
            for (_, window), result in ordered_map(read, compute, list(enumerate(windows)), workers=step.workers,
                                                   overlap=step.overlap):
                yield window, result
                result = None  # ordered_map reads the next window when asked: this one is let go of first
        finally:
            if owned and hasattr(inputs, "close"):
                inputs.close()

    def _update(self, fraction, message):
        """Progress that never moves back: a window computing ahead ticks while the one before is handed over."""
        with self._lock:
            self._reached = max(self._reached, fraction)
            fraction = self._reached
        self.progress.update(fraction, message)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
