"""Exact k-nearest-neighbour search against a fixed set of index points.

``NeighbourIndex`` wraps SciPy's ``cKDTree``: every query point's neighbours depend only on the tree and on
that point (the tree walk and its float operations are per point), so results are the same whatever the
batch or window a point is queried in, and whatever the number of worker threads. ``brute_force`` is the
plain reference (fixed-order per-point distances, no matrix product) used by the benchmark and the tests.

SciPy is an optional dependency of the plugin: it is imported only when an index is built.
"""

import numpy as np

from ..runtime.errors import InputError

INSTALL_SCIPY = (
    "This algorithm needs SciPy (scipy.spatial.cKDTree), which the Python running QGIS does not have. Install it, "
    "then restart QGIS: on Debian/Ubuntu 'sudo apt install python3-scipy'; on Windows run "
    "'python -m pip install scipy' in the OSGeo4W Shell; on macOS or in a virtual environment "
    "'python3 -m pip install scipy'."
)


def require_ckdtree():
    """SciPy's ``cKDTree`` class, or an ``InputError`` saying how to install SciPy."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        raise InputError(INSTALL_SCIPY) from None
    return cKDTree


class NeighbourIndex:
    """The ``k`` nearest index points (Euclidean) of any query point, nearest first."""

    SORT_DIMENSIONS = 3

    def __init__(self, points, workers=-1):
        self.points = np.ascontiguousarray(points, np.float64)
        self.workers = workers
        # leafsize 32: about 10 % faster than the default 16 for k = 12 in 8 dimensions (bench/bench_knn.py)
        self._tree = require_ckdtree()(self.points, leafsize=32, balanced_tree=True, compact_nodes=True)
        spread = self.points.std(axis=0) if len(self.points) else np.ones(self.points.shape[1])
        self._sort_dims = np.argsort(-spread, kind="stable")[: self.SORT_DIMENSIONS]
        self._cell = 2.0 / np.where(spread[self._sort_dims] > 0, spread[self._sort_dims], 1.0)

    def __len__(self):
        return len(self.points)

    def query(self, points, k):
        """Indices (m, k) of the nearest index points of each row of ``points`` (m, D).

        Queries are walked in order of coarse cells (half a standard deviation of the index on its widest
        dimensions): neighbouring queries then visit the same tree nodes, about 25 % less CPU than raster order.
        Each point's result is computed on its own, so the order changes nothing else.
        """
        if len(points) == 0:
            return np.empty((0, k), np.intp)
        points = np.asarray(points, np.float64)
        cells = np.floor(points[:, self._sort_dims] * self._cell).astype(np.int64)
        order = np.lexsort(cells.T[::-1])
        _, indices = self._tree.query(np.ascontiguousarray(points[order]), k=[*range(1, k + 1)],
                                      workers=self.workers)
        result = np.empty((len(points), k), np.intp)
        result[order] = indices
        return result


def brute_force(index_points, points, k, chunk=256):
    """Reference k nearest neighbours (m, k), nearest first, by computing every distance.

    Distances are summed per dimension in a fixed order, so a point's result does not depend on the batch.
    Which of several index points at exactly the k-th distance is kept is unspecified (as in any k-NN).
    """
    index_points = np.asarray(index_points, np.float64)
    points = np.asarray(points, np.float64)
    result = np.empty((len(points), k), np.intp)
    columns = [np.ascontiguousarray(index_points[:, d]) for d in range(index_points.shape[1])]
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        distance = np.zeros((len(block), len(index_points)))
        for d, column in enumerate(columns):
            difference = block[:, d : d + 1] - column[None, :]
            difference *= difference
            distance += difference
        nearest = np.argpartition(distance, k - 1, axis=1)[:, :k] if k < len(index_points) else (
            np.broadcast_to(np.arange(len(index_points)), distance.shape).copy())
        # order the k by (distance, index) so ties resolve the same way every time
        chosen = np.take_along_axis(distance, nearest, axis=1)
        order = np.lexsort((nearest, chosen), axis=1)
        result[start : start + len(block)] = np.take_along_axis(nearest, order, axis=1)
    return result
