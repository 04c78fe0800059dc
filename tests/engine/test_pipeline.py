"""engine/runtime/pipeline.ordered_map on its own: results in input order whatever the compute times, reads in the
calling thread with a bounded number in flight, errors raised where they happen, and a consumer that stops
(cancel) stopping the reads."""

import threading
import time
import weakref

import pytest

from map_segmenter.engine.runtime.errors import Cancelled
from map_segmenter.engine.runtime.pipeline import ordered_map
from map_segmenter.engine.runtime.progress import Progress


class Recorder:
    """read/compute pair that logs what ran, where, and how many items were read but not yet handed back."""

    def __init__(self, delays=None, fail_read=None, fail_compute=None):
        self.delays = delays or {}
        self.fail_read, self.fail_compute = fail_read, fail_compute
        self.reads, self.computed, self.read_threads, self.compute_threads = [], [], set(), set()
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def read(self, item):
        self.read_threads.add(threading.get_ident())
        if item == self.fail_read:
            raise OSError(f"cannot read {item}")
        self.reads.append(item)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return item, item * 10

    def compute(self, item, value):
        self.compute_threads.add(threading.get_ident())
        time.sleep(self.delays.get(item, 0.0))
        if item == self.fail_compute:
            raise ValueError(f"cannot compute {item}")
        with self.lock:
            self.computed.append(item)
        return value + 1

    def handed_back(self):
        with self.lock:
            self.in_flight -= 1


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_come_in_input_order_whatever_the_compute_times(workers):
    # early items are the slowest: with threads they finish last, yet come back first
    recorder = Recorder(delays={0: 0.05, 1: 0.03, 2: 0.01})
    results = []
    for item, value in ordered_map(recorder.read, recorder.compute, range(8), workers=workers):
        recorder.handed_back()
        results.append((item, value))
    assert results == [(i, i * 10 + 1) for i in range(8)]
    assert recorder.reads == list(range(8))  # reads in order too (GDAL reads stay sequential)


def test_reads_stay_in_the_calling_thread_compute_goes_to_workers_and_in_flight_is_bounded():
    recorder = Recorder(delays={i: 0.01 for i in range(10)})
    for _ in ordered_map(recorder.read, recorder.compute, range(10), workers=2):
        recorder.handed_back()
    assert recorder.read_threads == {threading.get_ident()}
    assert threading.get_ident() not in recorder.compute_threads
    assert recorder.most_in_flight <= 3  # workers + 1


@pytest.mark.parametrize("workers", [2, 4])
def test_a_result_handed_over_is_not_kept_while_the_next_item_is_read(workers):
    """Only the ``workers`` items in flight are in memory when the next one is read, once the caller has let
    go of the result it was given: the finished future kept one more (a window more than the plans count)."""

    class Result:
        pass

    alive, most = weakref.WeakSet(), [0]

    def read(item):
        time.sleep(0.005)  # the workers finish what they have
        most[0] = max(most[0], len(alive))
        return (item,)

    def compute(item):
        result = Result()
        alive.add(result)
        return result

    for _, result in ordered_map(read, compute, range(20), workers=workers):
        result = None  # noqa: F841 (the caller lets go)
    assert most[0] == workers


def test_one_worker_runs_everything_in_the_calling_thread():
    recorder = Recorder()
    assert [v for _, v in ordered_map(recorder.read, recorder.compute, range(3), workers=1)] == [1, 11, 21]
    assert recorder.compute_threads == {threading.get_ident()}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_compute_error_is_raised_at_its_item_after_the_items_before_it(workers):
    recorder = Recorder(fail_compute=3)
    got = []
    with pytest.raises(ValueError, match="cannot compute 3"):
        for item, _ in ordered_map(recorder.read, recorder.compute, range(10), workers=workers):
            got.append(item)
    assert got == [0, 1, 2]
    assert max(recorder.reads) <= 3 + workers  # reading stopped soon after the failure


@pytest.mark.parametrize("workers", [1, 2])
def test_a_read_error_is_raised_and_nothing_after_it_is_read(workers):
    recorder = Recorder(fail_read=4)
    got = []
    with pytest.raises(OSError, match="cannot read 4"):
        for item, _ in ordered_map(recorder.read, recorder.compute, range(10), workers=workers):
            got.append(item)
    assert got == list(range(4 - workers if workers > 1 else 4))
    assert recorder.reads == [0, 1, 2, 3]


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_in_the_consumer_stops_reading_and_drops_the_pending_work(workers):
    recorder = Recorder(delays={i: 0.02 for i in range(100)})
    stop = threading.Event()
    progress = Progress(is_cancelled=stop.is_set)
    with pytest.raises(Cancelled):
        for item, _ in ordered_map(recorder.read, recorder.compute, range(100), workers=workers):
            if item == 5:
                stop.set()
            progress.update(item / 100)
    assert max(recorder.reads) <= 5 + workers
    time.sleep(0.1)  # anything still queued would have run by now
    assert len(recorder.computed) <= len(recorder.reads)
    assert max(recorder.computed) <= 5 + workers
