"""Overlapping window I/O with computation on a small thread pool, with results kept in window order.

GDAL reads and writes stay in the calling thread (a dataset handle is not thread-safe); numpy work, which
releases the GIL, runs on worker threads. Results come back in input order, so everything written or
sampled from them is the same as in a sequential run: byte-identical output whatever the thread count.
"""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

WORKERS = max(1, min(2, os.cpu_count() or 1))


def ordered_map(read, compute, items, workers=WORKERS, overlap=False):
    """Yield ``(item, compute(*read(item)))`` in the order of ``items``, at most ``workers + 1`` in flight.

    One worker computes in this thread, between reads, unless ``overlap``: then in a thread of its own while the
    next item is read (and the last result written) here.

    A result is let go of here as soon as it is handed over; a caller that drops its own reference before asking
    for the next one has no window in memory beyond those in flight while the next is read.
    (The finished future kept each result alive through the next read: one window more than the memory plans
    count, +30 MB at the peak of a 1 GPix kmeans; bench/README.md.)"""
    if workers <= 1 and not overlap:
        for item in items:
            yield item, compute(*read(item))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(compute, *read(item))))
                if len(pending) > workers:
                    yield _handed_over(pending)
            while pending:
                yield _handed_over(pending)
        finally:
            for _, future in pending:
                future.cancel()


def _handed_over(pending):
    """The oldest pending (item, result), with no reference to it left in the queue or its future."""
    item, future = pending.popleft()
    return item, future.result()
