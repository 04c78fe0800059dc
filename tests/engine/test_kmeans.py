"""engine/segmentation/kmeans.py on its own: k-means++ seeding, Lloyd iterations, the fit, the ordering and the
assignment, on small cases whose answer is known."""

import numpy as np
import pytest

from map_segmenter.engine.runtime.errors import Cancelled, InputError
from map_segmenter.engine.segmentation import kmeans


def test_kmeans_plus_plus_with_k_equal_to_the_distinct_points_takes_every_point_once():
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 30.0]])
    for seed in range(20):
        centres = kmeans.kmeans_plus_plus(points, 5, np.random.default_rng(seed))
        # a point already chosen is at distance 0 from the centres, so it has no chance to be drawn again
        assert sorted(map(tuple, centres)) == sorted(map(tuple, points))


def test_kmeans_plus_plus_first_centre_and_draws_follow_the_generator():
    points = np.random.default_rng(0).normal(size=(200, 3))
    first = kmeans.kmeans_plus_plus(points, 4, np.random.default_rng(7))
    again = kmeans.kmeans_plus_plus(points, 4, np.random.default_rng(7))
    assert np.array_equal(first, again)
    assert np.array_equal(first[0], points[np.random.default_rng(7).integers(len(points))])
    assert all(any(np.array_equal(centre, point) for point in points) for centre in first)  # centres are points


def test_kmeans_plus_plus_on_identical_points_still_gives_k_centres():
    points = np.ones((6, 2))
    centres = kmeans.kmeans_plus_plus(points, 3, np.random.default_rng(0))
    assert centres.shape == (3, 2) and np.all(centres == 1.0)


def test_kmeans_plus_plus_draws_by_squared_distance():
    # 50 copies of one point and one far point: whichever comes first, the other is the only one with weight
    points = np.vstack([np.zeros((50, 1)), np.array([[100.0]])])
    for seed in range(30):
        centres = kmeans.kmeans_plus_plus(points, 2, np.random.default_rng(seed))
        assert sorted(centres[:, 0]) == [0.0, 100.0]


def test_lloyd_converges_to_the_known_partition_and_inertia():
    points = np.array([[0.0], [1.0], [10.0], [11.0]])
    # from centres 0 and 1: {0} / {1, 10, 11} -> centres 0 and 7.33 -> {0, 1} / {10, 11} -> 0.5 and 10.5, stable
    centres, inertia = kmeans.lloyd(points, np.array([[0.0], [1.0]]))
    assert np.array_equal(centres, [[0.5], [10.5]])
    assert inertia == pytest.approx(1.0)


def test_lloyd_iteration_cap_and_first_step():
    points = np.array([[0.0], [1.0], [10.0], [11.0]])
    centres, _ = kmeans.lloyd(points, np.array([[0.0], [1.0]]), iterations=1)
    assert np.allclose(centres, [[0.0], [22.0 / 3.0]])


def test_lloyd_keeps_an_empty_clusters_centre_and_does_not_touch_its_input():
    points = np.array([[0.0], [1.0], [100.0], [101.0]])
    start = np.array([[0.0], [100.0], [1000.0]])
    centres, inertia = kmeans.lloyd(points, start)
    assert np.array_equal(centres, [[0.5], [100.5], [1000.0]])
    assert inertia == pytest.approx(1.0)
    assert np.array_equal(start, [[0.0], [100.0], [1000.0]])


def test_lloyd_calls_check_every_iteration_and_a_cancel_stops_it():
    points = np.random.default_rng(1).normal(size=(300, 2))
    calls = []
    kmeans.lloyd(points, points[:3].copy(), iterations=5, check=lambda: calls.append(1))
    assert 1 <= len(calls) <= 5

    def cancel():
        raise Cancelled()

    with pytest.raises(Cancelled):
        kmeans.lloyd(points, points[:3].copy(), check=cancel)


def _blobs(seed=0, per=100):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    return np.vstack([mean + rng.normal(size=(per, 2)) for mean in means]), means


def test_fit_finds_separated_clusters_and_is_deterministic():
    points, means = _blobs()
    centres = kmeans.fit(points, 3, seed=5)
    assert np.array_equal(centres, kmeans.fit(points, 3, seed=5))  # same seed and order: same bits
    found = kmeans.order_by_brightness(centres)
    assert np.allclose(found, means[np.lexsort(means.T[::-1])], atol=0.5)


def test_fit_refines_the_trial_winner_on_all_points():
    points, _ = _blobs(per=400)
    points = points[np.random.default_rng(3).permutation(len(points))]
    centres = kmeans.fit(points, 3, seed=0, trial_size=60)
    winner = kmeans.fit(points[:60], 3, seed=0)
    refined, _ = kmeans.lloyd(points, winner)
    assert np.array_equal(centres, refined)


def test_fit_refuses_fewer_points_than_segments():
    with pytest.raises(InputError, match="Only 2 valid blocks for 3 segments"):
        kmeans.fit(np.zeros((2, 3)), 3)


def test_order_by_brightness_sorts_by_the_first_channel_then_the_others():
    centres = np.array([[5.0, 1.0], [1.0, 9.0], [5.0, 0.0], [3.0, 3.0]])
    assert np.array_equal(kmeans.order_by_brightness(centres), [[1.0, 9.0], [3.0, 3.0], [5.0, 0.0], [5.0, 1.0]])


def test_assign_is_the_nearest_centre_first_on_ties_and_window_independent():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float64)
    features = rng.uniform(-5, 15, size=(1000, 2)).astype(np.float32)
    expected = ((features[:, None, :] - centres[None].astype(np.float32)) ** 2).sum(axis=2).argmin(axis=1)
    got = kmeans.assign(features, centres)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert np.array_equal(kmeans.assign(features[137:611], centres), got[137:611])
    tie = np.array([[5.0, 0.0]], np.float32)  # as near to centre 0 as to centre 1: the first wins
    assert kmeans.assign(tie, centres)[0] == 0


def test_assign_uses_uint16_beyond_256_centres():
    centres = np.arange(300, dtype=np.float64)[:, None]
    features = np.array([[299.2], [0.1], [256.4]], np.float32)
    got = kmeans.assign(features, centres)
    assert got.dtype == np.uint16 and got.tolist() == [299, 0, 256]
