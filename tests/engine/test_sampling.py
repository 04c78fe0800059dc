"""The block sample behind every centre fit: the `size` smallest hash keys over the WHOLE raster, whatever the
windows (the predecessor stopped sampling early, so the bottom of large rasters never contributed)."""

import numpy as np

from map_segmenter.engine.sampling import BlockSample, hash_keys


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
