"""Overlapping window I/O with computation on a small thread pool, with results kept in window order.

GDAL reads and writes stay in the calling thread (a dataset handle is not thread-safe); numpy work, which
releases the GIL, runs on worker threads. Results come back in input order, so everything written or
sampled from them is the same as in a sequential run: byte-identical output whatever the thread count.
"""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

WORKERS = max(1, min(2, os.cpu_count() or 1))


def ordered_map(read, compute, items, workers=WORKERS):
    """Yield ``(item, compute(*read(item)))`` in the order of ``items``, at most ``workers + 1`` in flight."""
    if workers <= 1:
        for item in items:
            yield item, compute(*read(item))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(compute, *read(item))))
                if len(pending) > workers:
                    done_item, future = pending.popleft()
                    yield done_item, future.result()
            while pending:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        finally:
            for _, future in pending:
                future.cancel()
