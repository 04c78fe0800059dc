"""K-Means: seeded k-means++ initialisation, Lloyd iterations, and exact nearest-centre assignment."""

import numpy as np

from .errors import InputError


def _squared_distances(points, centres):
    """(n, k) squared distances for the fit (one fixed sample, so a matrix product is reproducible)."""
    distances = (points * points).sum(axis=1)[:, None] - 2.0 * points @ centres.T
    distances += (centres * centres).sum(axis=1)[None, :]
    return np.maximum(distances, 0.0)


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


def lloyd(points, centres, iterations=50, tolerance=1e-6):
    """Lloyd iterations from ``centres``; returns (centres, inertia)."""
    k = len(centres)
    for _ in range(iterations):
        labels = _squared_distances(points, centres).argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, points[:, c], minlength=k) for c in range(points.shape[1])], axis=1)
        updated = centres.copy()
        filled = counts > 0
        updated[filled] = sums[filled] / counts[filled, None]
        shift = np.abs(updated - centres).max()
        centres = updated
        if shift <= tolerance:
            break
    inertia = _squared_distances(points, centres).min(axis=1).sum()
    return centres, inertia


def fit(points, k, seed=0, restarts=4, iterations=50, tolerance=1e-6):
    """Fit ``k`` centres to ``points`` (n, C): the best of ``restarts`` k-means++ starts (lowest inertia).

    Deterministic for a given seed and point order. Several starts guard against the poor local optima a
    single start falls into (e.g. one cluster taking a colour's blocks and their mixed neighbours).
    """
    points = np.asarray(points, np.float64)
    if points.shape[0] < k:
        raise InputError(
            f"Only {points.shape[0]} valid blocks for {k} segments. Choose fewer SEGMENTS or a smaller BLOCK_SIZE."
        )
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres, inertia = lloyd(points, kmeans_plus_plus(points, k, rng), iterations, tolerance)
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
    columns = [np.ascontiguousarray(features[:, channel], np.float64) for channel in range(features.shape[1])]
    best = np.full(features.shape[0], np.inf)
    nearest = np.zeros(features.shape[0], np.intp)
    for index, centre in enumerate(centres):
        distance = np.zeros(features.shape[0])
        for column, value in zip(columns, centre):
            difference = column - value
            difference *= difference
            distance += difference
        closer = distance < best
        best[closer] = distance[closer]
        nearest[closer] = index
    return nearest
