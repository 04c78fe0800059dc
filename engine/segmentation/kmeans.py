"""K-Means: seeded k-means++ initialisation, Lloyd iterations, and exact nearest-centre assignment."""

import numpy as np

from ..runtime import blas, params
from ..runtime.errors import InputError


def _squared_distances(points, centres, point_norms=None):
    """(n, k) squared distances for the fit (one fixed sample, so a matrix product is reproducible)."""
    if point_norms is None:
        point_norms = (points * points).sum(axis=1)
    distances = points @ (-2.0 * centres.T)
    distances += point_norms[:, None]
    distances += (centres * centres).sum(axis=1)[None, :]
    return np.maximum(distances, 0.0, out=distances)


def kmeans_plus_plus(points, k, rng):
    n = points.shape[0]
    centres = np.empty((k, points.shape[1]), np.float64)
    centres[0] = points[rng.integers(n)]
    closest = _squared_distances(points, centres[:1])[:, 0]
    for index in range(1, k):
        total = closest.sum()
        if total <= 0:
            choice = rng.integers(n)
        else:
            choice = int(np.searchsorted(np.cumsum(closest), rng.random() * total, side="right"))
            choice = min(choice, n - 1)
        centres[index] = points[choice]
        closest = np.minimum(closest, _squared_distances(points, centres[index : index + 1])[:, 0])
    return centres


def lloyd(points, centres, iterations=100, check=None):
    """Lloyd iterations from ``centres`` until no point changes cluster; returns (centres, inertia).

    ``check`` is called every iteration (it raises to cancel)."""
    k = len(centres)
    norms = (points * points).sum(axis=1)
    labels = None
    for _ in range(iterations):
        if check:
            check()
        updated_labels = _squared_distances(points, centres, norms).argmin(axis=1)
        if labels is not None and np.array_equal(updated_labels, labels):
            break
        labels = updated_labels
        counts = np.bincount(labels, minlength=k)
        filled = counts > 0
        sums = np.eye(k)[labels].T @ points  # one-hot product: one pass instead of a bincount per channel
        centres = centres.copy()
        centres[filled] = sums[filled] / counts[filled, None]
    inertia = _squared_distances(points, centres, norms).min(axis=1).sum()
    return centres, inertia


def fit(points, k, seed=0, restarts=4, iterations=100, trial_size=10_000, check=None, start=None):
    """Fit ``k`` centres to ``points`` (n, C), deterministic for a given seed and point order.

    Several k-means++ starts guard against the poor local optima one start falls into (e.g. a cluster
    taking one colour's blocks and their mixed neighbours). The starts compete on the first
    ``trial_size`` points (a random subset when the points come in random order, as samples do); the
    winner is then refined on all points. ``start`` (k, C): centres to refine instead of the k-means++ starts
    (the automatic choice of K, engine/segmentation/hierarchy.py).
    """
    points = np.asarray(points, np.float64)
    if points.shape[0] < k:
        raise InputError(
            f"Only {points.shape[0]} valid blocks for {k} segments. Choose fewer {params.SEGMENTS} or a smaller "
            f"{params.BLOCK_SIZE}."
        )
    trial = points[:trial_size]
    with blas.single_thread():  # products too small for two threads (engine/runtime/blas.py); the numbers do not change
        if start is None:
            best = fit_trial(trial, k, seed, restarts, iterations, check)
        else:
            best, _ = lloyd(trial, np.asarray(start, np.float64), iterations, check)
        if len(points) > len(trial):
            best, _ = lloyd(points, best, iterations, check)
    return best


def fit_trial(trial, k, seed=0, restarts=4, iterations=100, check=None):
    """The best of ``restarts`` k-means++ starts refined by Lloyd on ``trial`` (the first part of ``fit``)."""
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres, inertia = lloyd(trial, kmeans_plus_plus(trial, k, rng), iterations, check)
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best


def order_by_brightness(centres):
    """Centres sorted by their first channel (lightness), ties by the others: ids 1..K run dark to light."""
    order = np.lexsort(centres.T[::-1])
    return centres[order]


def assign(features, centres):
    """Index (0..K-1) of the nearest centre for every row of ``features`` (n, C).

    Element-wise in a fixed order, so a block gets the same id whatever window it is assigned in.
    """
    columns = [np.ascontiguousarray(features[:, channel], np.float32) for channel in range(features.shape[1])]
    best = np.full(features.shape[0], np.inf, np.float32)
    nearest = np.zeros(features.shape[0], np.uint8 if len(centres) <= 256 else np.uint16)
    difference = np.empty(features.shape[0], np.float32)
    for index, centre in enumerate(centres.astype(np.float32)):
        distance = np.zeros(features.shape[0], np.float32)
        for column, value in zip(columns, centre):
            np.subtract(column, value, out=difference)
            difference *= difference
            distance += difference
        closer = distance < best
        best[closer] = distance[closer]
        nearest[closer] = index
    return nearest
