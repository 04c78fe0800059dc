"""The block sample behind every centre fit: the `size` smallest hash keys over the WHOLE raster, whatever the
windows (the predecessor stopped sampling early, so the bottom of large rasters never contributed)."""

import numpy as np

from map_segmenter.engine.segmentation.sampling import BlockSample, _smallest, candidates, hash_keys


def offered(chunks, size=500, seed=3, total=100_000):
    sample = BlockSample(size, seed)
    indices = np.arange(total)
    vectors = np.stack([indices, indices * 2], axis=1).astype(np.float32)
    for part in np.array_split(indices, chunks):
        sample.offer(part, vectors[part])
    return sample


def test_sample_is_the_smallest_keys_of_the_whole_raster_in_any_window_layout():
    expected = np.sort(np.argsort(hash_keys(np.arange(100_000), 3), kind="stable")[:500])
    for chunks in (1, 7, 100, 4000):
        sample = offered(chunks)
        chosen = sample.vectors[:, 0].astype(np.int64)
        assert np.array_equal(np.sort(chosen), expected)
        assert np.array_equal(sample.vectors[:, 1], sample.vectors[:, 0] * 2)  # vectors stay with their blocks


def test_the_last_windows_contribute_like_the_first():
    """Exact counts for this seed: the sample is spread over the raster, the bottom tenth included."""
    chosen = offered(100).vectors[:, 0].astype(np.int64)
    per_tenth = np.bincount(chosen // 10_000, minlength=10)
    expected = np.bincount(np.argsort(hash_keys(np.arange(100_000), 3), kind="stable")[:500] // 10_000, minlength=10)
    assert np.array_equal(per_tenth, expected) and per_tenth[-1] > 0 and per_tenth.min() >= 30


def test_seed_changes_the_sample_and_reruns_do_not():
    a, b, c = offered(10, seed=1), offered(10, seed=1), offered(10, seed=2)
    assert np.array_equal(a.vectors, b.vectors)
    assert not np.array_equal(np.sort(a.vectors[:, 0]), np.sort(c.vectors[:, 0]))


def test_offers_give_what_one_stable_sort_of_everything_gives():
    """The merge of each offer equals the stable sort of all keys offered (the smallest `size`), ties included."""
    rng = np.random.default_rng(5)
    sample = BlockSample(300, 0)
    offered_keys, offered_vectors = [], []
    for _ in range(40):
        indices = rng.integers(0, 2000, rng.integers(0, 90))  # repeated indices: equal keys
        vectors = rng.normal(size=(len(indices), 2)).astype(np.float32)
        sample.offer(indices, vectors)
        offered_keys.append(hash_keys(indices, 0))
        offered_vectors.append(vectors)
    keys, vectors = np.concatenate(offered_keys), np.concatenate(offered_vectors)
    order = np.argsort(keys, kind="stable")[:300]
    assert np.array_equal(sample.keys, keys[order])
    assert np.array_equal(sample.vectors, vectors[order])


def test_offering_only_the_candidates_of_any_earlier_bound_gives_the_same_sample():
    """Workers hash their cells and leave out those at or above the bound they last saw (it only decreases, so a
    stale one keeps more): the sample is the same as when every cell is offered."""
    rng = np.random.default_rng(2)
    parts = np.array_split(np.arange(60_000), 40)
    everything, filtered = BlockSample(2000, 7), BlockSample(2000, 7)
    bounds = [None]
    for part in parts:
        vectors = np.stack([part, -part], axis=1).astype(np.float32)
        everything.offer(part, vectors)
        seen = bounds[rng.integers(max(0, len(bounds) - 3), len(bounds))]  # one of the last few bounds
        chosen, keys = candidates(part, 7, seen)
        filtered.offer(part[chosen], vectors[chosen], keys)
        bounds.append(filtered.bound)
    assert bounds[-1] is not None and len(set(bounds)) > 4  # the bound changed at merges
    assert np.array_equal(filtered.keys, everything.keys)
    assert np.array_equal(filtered.vectors, everything.vectors)


def test_smallest_keys_are_those_of_a_stable_sort_ties_included():
    rng = np.random.default_rng(3)
    for size in (1, 5, 100, 999):
        keys = rng.integers(0, 50, 1000).astype(np.uint64)  # many equal keys
        assert np.array_equal(_smallest(keys, size), np.argsort(keys, kind="stable")[:size])
    assert np.array_equal(_smallest(keys[:3], 10), np.argsort(keys[:3], kind="stable"))
