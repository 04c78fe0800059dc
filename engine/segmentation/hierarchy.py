"""How many kinds of region: the merge tree of a run's centres, its cuts, and the automatic choice of K.

**Merge tree.** Ward's linkage on the centres weighted by their sizes (the sampled cells nearest to each): the two
segments whose merge raises the mean squared distance of the sample to its centres least merge first, into their
size-weighted mean. Leaves are the segment ids 1..K, the i-th merge makes node K + i; a merge is stored as
``[a, b, cost]`` with ``cost`` that rise (feature units squared). Ward's cost of two groups depends only on their
centres and sizes, so the tree of a run's centres is known from its metadata alone, and cutting it is a lookup
table from ids 1..K to ids 1..k (``cut``): ``segmenter:merge`` re-cuts a label raster without the features.

**Automatic K** (SEGMENTS = 0, ``choose``): K_MAX centres are fitted on the first ``trial_size`` sampled vectors
(the k-means++ starts of ``kmeans.fit``) and merged along their tree while a merge loses less than THRESHOLD (4 %)
of the variance of those vectors: two segments whose union explains so little are taken for one kind of region.
The criterion is the share each merge K -> K - 1 loses, for every K in K_MIN..K_MAX; K is the most segments whose
next merge still loses at least 4 %. The merged centres start the Lloyd iterations on the whole sample. The cost is
one fit at K_MAX on the trial points: the sample is the run's seeded sample, so the choice is the same whatever
MEMORY_MB, tiling or scheduler. (Measured against Calinski-Harabasz, BIC, silhouette, the tree's largest gap, an
elbow and other shares on the labelled tiles: bench/autok_candidates.py, bench/README.md.)
"""

import numpy as np

from ..runtime import blas
from . import kmeans

K_MIN, K_MAX = 2, 12
CRITERION = "ward_share"
THRESHOLD = 0.04  # a merge that loses less than this share of the variance joins two segments of one kind


def sizes_of(points, centres):
    """How many of ``points`` are nearest to each centre (the label pass's float32 assignment)."""
    return np.bincount(kmeans.assign(points, centres), minlength=len(centres)).astype(np.int64)


def merge_tree(centres, sizes):
    """Ward's merges of ``centres`` (K, C) weighted by ``sizes`` (K,): K - 1 rows ``[a, b, cost]``, node ids 1..K
    the segments, K + i the i-th merge; ``cost`` = rise of the mean squared distance to the centres. Ties merge
    the pair with the smallest ids first; empty segments (size 0) merge first, at cost 0."""
    centres = np.asarray(centres, np.float64)
    weights = np.asarray(sizes, np.float64)
    total = max(float(weights.sum()), 1.0)
    # the active nodes in id order (a merge's node has the largest id: it goes last) and their pair costs, upper
    # triangle only; one new row a merge, and argmin's first minimum in row-major order is the smallest ids on ties
    ids = list(range(1, len(centres) + 1))
    active, mass = centres.copy(), weights.copy()
    costs = np.full((len(ids), len(ids)), np.inf)
    for position in range(len(ids) - 1):
        costs[position, position + 1 :] = _costs(active[position + 1 :], mass[position + 1 :], active[position],
                                                 mass[position], total)
    merges = []
    following = len(centres) + 1
    while len(ids) > 1:
        first, second = divmod(int(np.argmin(costs)), len(ids))
        cost = float(costs[first, second])
        (ca, na), (cb, nb) = (active[first], mass[first]), (active[second], mass[second])
        joined = na + nb
        centre = (ca * na + cb * nb) / joined if joined else (ca + cb) / 2
        merges.append([ids[first], ids[second], cost])
        keep = [position for position in range(len(ids)) if position not in (first, second)]
        ids = [ids[position] for position in keep] + [following]
        active = np.vstack([active[keep], centre])
        mass = np.append(mass[keep], joined)
        costs = np.pad(costs[np.ix_(keep, keep)], ((0, 1), (0, 1)), constant_values=np.inf)
        costs[:-1, -1] = _costs(active[:-1], mass[:-1], centre, joined, total)
        following += 1
    return merges


def _costs(others, their_sizes, centre, size, total):
    """Ward's cost of merging each of ``others`` (sizes ``their_sizes``) with ``centre`` (``size``), as merge_tree
    defines it: size product over joined size, times the squared distance, over ``total``; 0 for two empty ones."""
    joined = their_sizes + size
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = their_sizes * size / joined * ((others - centre) ** 2).sum(axis=1) / total
    return np.where(joined == 0, 0.0, cost)


def groups(merges, segments, k):
    """The leaves (ids 1..``segments``) of each of the ``k`` groups left after the first ``segments - k``
    ``merges``, ordered by their smallest id (ids run dark to light, so do the groups)."""
    if not 1 <= k <= segments:
        raise ValueError(f"k must be between 1 and {segments}; got {k}")
    members = {index: [index] for index in range(1, segments + 1)}
    for number, (a, b, _) in enumerate(merges[: segments - k]):
        members[segments + 1 + number] = sorted(members.pop(int(a)) + members.pop(int(b)))
    return sorted(members.values())


def cut(merges, segments, k):
    """Lookup table (``segments`` + 1 entries, uint8/uint16): id -> id of its group among ``k``, 0 -> 0."""
    table = np.zeros(segments + 1, np.uint8 if segments <= 255 else np.uint16)
    for new, leaves in enumerate(groups(merges, segments, k), start=1):
        table[leaves] = new
    return table


def merged(centres, sizes, merges, k):
    """(centres, sizes, merges) of the cut at ``k``: each group's size-weighted mean centre, summed sizes, and the
    remaining merges renumbered (the tree of the merged centres)."""
    centres = np.asarray(centres, np.float64)
    sizes = np.asarray(sizes, np.int64)
    segments = len(centres)
    parts = groups(merges, segments, k)
    new_centres = np.empty((k, centres.shape[1]))
    new_sizes = np.empty(k, np.int64)
    for index, leaves in enumerate(parts):
        weights = sizes[np.array(leaves) - 1].astype(np.float64)
        rows = centres[np.array(leaves) - 1]
        new_sizes[index] = int(weights.sum())
        new_centres[index] = (weights @ rows) / weights.sum() if weights.sum() else rows.mean(axis=0)
    # the groups are the new leaves 1..k; merge i >= K - k (node K + 1 + i) makes node k + 1 + i - (K - k)
    removed = segments - k

    def new_id(node):
        node = int(node)
        if node < segments + 1 + removed:
            return _group_of(parts, _leaves_of(merges, segments, node))
        return node - 2 * removed

    rest = [[*sorted((new_id(a), new_id(b))), cost] for a, b, cost in merges[removed:]]
    return new_centres, new_sizes, rest


def _leaves_of(merges, segments, node):
    if node <= segments:
        return [node]
    a, b, _ = merges[node - segments - 1]
    return _leaves_of(merges, segments, int(a)) + _leaves_of(merges, segments, int(b))


def _group_of(parts, leaves):
    for new, members in enumerate(parts, start=1):
        if leaves[0] in members:
            return new
    raise ValueError("leaf not in any group")


# ----------------------------------------------------------------------------------------------------- criterion


def evidence(points, merges, k_min, k_max):
    """{k: share} for k in k_min..k_max: the rise of the mean squared distance to the centres that merging k
    groups into k - 1 costs (the tree's merge), as a share of the total variance of ``points`` about their mean."""
    total = float(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean())
    segments = len(merges) + 1
    return {k: (merges[segments - k][2] / total if total > 0 else 0.0)
            for k in range(k_min, min(k_max, segments) + 1)}


def best_k(values, threshold=THRESHOLD):
    """The most groups whose next merge still costs at least ``threshold`` of the variance (Ward's merge costs
    grow along the tree, so every earlier merge cost less); the smallest k considered when none does."""
    kept = [k for k, share in values.items() if share >= threshold]
    return max(kept) if kept else min(values)


def choose(points, k_min=K_MIN, k_max=K_MAX, seed=0, check=None, trial_size=10_000):
    """(k, {k: share}, start centres (k, C)) for the sampled ``points``: see the module's docstring."""
    points = np.asarray(points, np.float64)
    trial = points[:trial_size]
    k_max = min(k_max, len(trial))
    with blas.single_thread():
        centres = kmeans.fit_trial(trial, k_max, seed, check=check)
    sizes = sizes_of(trial, centres)
    merges = merge_tree(centres, sizes)
    values = evidence(trial, merges, k_min, k_max)
    k = best_k(values)
    start, _, _ = merged(centres, sizes, merges, k)
    return k, values, start


def evidence_text(criterion):
    """The log line of an automatic choice: the criterion per K and the K chosen."""
    values = ", ".join(f"{k}: {100 * value:.1f} %" for k, value in criterion["values"])
    return (f"Automatic K (K {criterion['k_min']}..{criterion['k_max']}; share of the variance lost by merging K "
            f"segments into K - 1, kept while at least {100 * criterion['threshold']:g} %): {values}; "
            f"chosen K = {criterion['k']}")
