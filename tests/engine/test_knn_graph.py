"""The graph formulation of refine_knn (engine/steps/latent_graph.py): speckle removal with boundaries kept, every
parameter visible in the result, convergence, calibration, the pixels' interpolation, window independence."""

import numpy as np
import pytest

from map_segmenter.engine.steps import knn_refine
from map_segmenter.engine.steps.knn_refine import block_seeds, refine_knn
from map_segmenter.engine.steps.latent_graph import (
    GraphModel,
    fit_temperature,
    graph_offsets,
    label_shares,
    pixel_labels,
    refine_window,
    squared_distances,
)

from helpers import read_array, write_pair

STRIDE = 4


def speckled(rng=None):
    """Truth: two regions meeting on a straight vertical boundary and a 6 x 6-block object of a third segment
    (features far apart: real edges). LABELS: the truth with speckle of known size: single blocks and 2 x 2 blocks
    labelled as the other region while their features are those of their surroundings (label noise), and three
    blocks whose features lie just on the other side of the decision boundary (what K-Means speckle is made of)."""
    rng = rng or np.random.default_rng(0)
    truth = np.where(np.arange(60)[None, :] < 30, 1, 2).repeat(40, axis=0)
    truth[10:16, 8:14] = 3
    centres = np.array([[0.0, 0.0], [10.0, 5.0], [20.0, -5.0]])
    features = centres[truth - 1] + rng.normal(0.0, 1.0, (*truth.shape, 2))
    labels = truth.copy()
    for y, x in [(3, 3), (25, 5), (30, 20)]:
        labels[y, x] = 3 - truth[y, x]
    for y, x in [(5, 40), (20, 50), (33, 45), (30, 3)]:
        labels[y : y + 2, x : x + 2] = 3 - truth[y, x]
    for y, x in [(8, 22), (36, 10), (15, 40)]:
        other = 3 - truth[y, x]
        features[y, x] = 0.45 * centres[truth[y, x] - 1] + 0.55 * centres[other - 1]
        labels[y, x] = other
    return truth, labels, np.moveaxis(features, -1, 0), centres


def pixels_of(blocks):
    return np.repeat(np.repeat(blocks, STRIDE, axis=0), STRIDE, axis=1)


def test_speckle_of_known_size_is_removed_and_true_boundaries_are_kept(tmp_path):
    truth, labels, features, centres = speckled()
    labels_path, features_path = write_pair(tmp_path, labels, features, stride=STRIDE, centres=centres)
    expected = pixels_of(truth)
    assert (read_array(labels_path) != expected).sum() == 22 * STRIDE * STRIDE  # 22 speckle blocks
    refine_knn(labels_path, features_path, str(tmp_path / "out.tif"))
    refined = read_array(tmp_path / "out.tif")
    wrong = np.argwhere(refined != expected)
    # every speckle block is gone; the straight boundary stays where it is to the pixel; the object keeps its
    # place and size, only its four corner pixels are rounded off by the interpolation between block centres
    corners = {(10 * STRIDE, 8 * STRIDE), (10 * STRIDE, 14 * STRIDE - 1), (16 * STRIDE - 1, 8 * STRIDE),
               (16 * STRIDE - 1, 14 * STRIDE - 1)}
    assert {tuple(p) for p in wrong} == corners
    assert (refined[:, 30 * STRIDE - 1] == 1).all() and (refined[:, 30 * STRIDE] == 2).all()


def test_larger_speckle_needs_more_iterations(tmp_path):
    """A 6 x 6-block patch of label noise is wider than one step reaches: one iteration only eats into it, the
    default iterations remove it (each step reaches one ring further)."""
    truth, labels, features, centres = speckled()
    labels = truth.copy()
    labels[24:30, 36:42] = 1  # inside region 2, features of region 2
    labels_path, features_path = write_pair(tmp_path, labels, features, stride=STRIDE, centres=centres)
    patch = (slice(24 * STRIDE, 30 * STRIDE), slice(36 * STRIDE, 42 * STRIDE))
    refine_knn(labels_path, features_path, str(tmp_path / "one.tif"), iterations=1)
    refine_knn(labels_path, features_path, str(tmp_path / "default.tif"))
    assert (read_array(tmp_path / "one.tif")[patch] == 1).sum() > 0.1 * 24 * 24
    assert (read_array(tmp_path / "default.tif")[patch] == 2).all()


@pytest.fixture(scope="module")
def baseline(kampala_pair, tmp_path_factory):
    labels, features = kampala_pair
    out = str(tmp_path_factory.mktemp("knn_graph") / "defaults.tif")
    refine_knn(labels, features, out)
    return read_array(out)


# Each parameter changed alone from its default must change the labels (a parameter that is ignored fails).
@pytest.mark.parametrize("name, value", [
    ("neighbors", 24), ("neighbors", 4), ("temperature", 0.2), ("temperature", 5.0), ("mix", 0.5), ("mix", 0.99),
    ("iterations", 2), ("iterations", 12), ("spatial_weight", 3.0), ("seed", 7), ("index_size", 300)])
def test_each_parameter_has_a_visible_effect(tmp_path, kampala_pair, baseline, name, value):
    labels, features = kampala_pair
    options = {name: value}
    if name == "seed":
        options["index_size"] = 300  # the whole crop is 12740 blocks: a seed matters through a smaller sample
        refine_knn(labels, features, str(tmp_path / "reference.tif"), index_size=300)
        reference = read_array(tmp_path / "reference.tif")
    else:
        reference = baseline
    refine_knn(labels, features, str(tmp_path / "out.tif"), **options)
    changed = (read_array(tmp_path / "out.tif") != reference).mean()
    assert changed > 0.0005, f"{name}={value} changed {100 * changed:.3f} % of the pixels"


def test_stronger_settings_clean_more(tmp_path, kampala_pair):
    """More mix, more iterations, more neighbours: fewer pixels keep a label that their surroundings lack."""
    from scipy import ndimage

    labels, features = kampala_pair

    def fragments(**options):
        refine_knn(labels, features, str(tmp_path / "f.tif"), **options)
        out = read_array(tmp_path / "f.tif")
        return sum(ndimage.label(out == value)[1] for value in np.unique(out) if value)

    assert fragments(mix=0.5) > fragments(mix=0.9) > fragments(mix=0.97)
    assert fragments(iterations=1) > fragments(iterations=3) > fragments(iterations=8)
    assert fragments(neighbors=4) > fragments(neighbors=24)


def test_the_propagation_converges_and_does_not_collapse(tmp_path, kampala_pair):
    """With MIX < 1 the steps converge to a fixed point (Zhou et al.), which keeps every segment; the
    predecessor's iterations had no such point."""
    labels, features = kampala_pair
    for iterations in (60, 90):
        refine_knn(labels, features, str(tmp_path / f"{iterations}.tif"), mix=0.7, iterations=iterations)
    converged = read_array(tmp_path / "60.tif")
    assert np.array_equal(converged, read_array(tmp_path / "90.tif"))
    assert set(np.unique(converged)) == set(np.unique(read_array(labels)))


def test_mix_zero_keeps_every_block_and_iterations_zero_keeps_every_pixel(tmp_path, kampala_pair):
    labels, features = kampala_pair
    original = read_array(labels)  # K-Means labels: one id per block
    refine_knn(labels, features, str(tmp_path / "none.tif"), iterations=0)
    assert np.array_equal(read_array(tmp_path / "none.tif"), original)
    refine_knn(labels, features, str(tmp_path / "still.tif"), mix=0.0)
    still = read_array(tmp_path / "still.tif")
    # no neighbours' say: every block keeps its id at its centre; only pixels between blocks of two ids move
    assert np.array_equal(block_seeds(still[1:, 1:], STRIDE)[:-1, :-1], block_seeds(original[1:, 1:], STRIDE)[:-1, :-1])
    assert 0 < (still != original).mean() < 0.1


# ------------------------------------------------------------------ the numerics one by one


def test_graph_offsets_are_whole_rings_nearest_first():
    counts = {n: len(graph_offsets(n)) for n in (1, 4, 5, 8, 9, 12, 13, 20, 21, 24, 25, 48)}
    assert counts == {1: 4, 4: 4, 5: 8, 8: 8, 9: 12, 12: 12, 13: 20, 20: 20, 21: 24, 24: 24, 25: 28, 48: 48}
    offsets = graph_offsets(12)
    assert offsets[:4] == ((-1, 0), (0, -1), (0, 1), (1, 0)) and set(offsets[8:]) == {(-2, 0), (0, -2), (0, 2),
                                                                                      (2, 0)}
    for n in (8, 20, 48):  # symmetric: every link goes both ways
        assert {(-dy, -dx) for dy, dx in graph_offsets(n)} == set(graph_offsets(n))


def test_fitted_temperature_makes_the_softmax_predict_the_neighbours_labels():
    """Neighbours' labels drawn from softmax(-d^2 / (T s^2)) with T = 0.7: the fit finds T within one grid step
    (19 %)."""
    rng = np.random.default_rng(4)
    centres = np.array([[0.0], [3.0], [6.0]])
    features = rng.uniform(-1.0, 7.0, (40000, 1))
    distances = squared_distances(features, centres)
    scale2 = 2.0
    logits = -distances / (0.7 * scale2)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = 1 + (rng.random((len(features), 1)) > probabilities.cumsum(axis=1)).sum(axis=1)
    fitted = fit_temperature(distances, scale2, np.arange(len(features)), labels)
    assert 0.7 / 1.19 <= fitted <= 0.7 * 1.19
    assert fit_temperature(distances, scale2, np.empty(0, int), np.empty(0, int)) == 1.0


def test_label_shares_count_the_ids_of_the_pixels_of_each_block():
    pixels = np.array([[1, 1, 2, 2, 3],
                       [1, 1, 2, 1, 0],
                       [0, 0, 3, 3, 3],
                       [0, 0, 3, 3, 0]], np.uint8)
    shares = label_shares(pixels, block_seeds(pixels, 2), 2, 3)
    assert shares.uniform.tolist() == [[1, 0, 3], [0, 3, 3]]  # all 0 (nodata) is uniform with seed 0
    assert list(zip(shares.rows, shares.cols)) == [(0, 1)]
    assert np.allclose(shares.shares, [[0.25, 0.75, 0.0]])


def test_pixels_take_the_best_id_interpolated_between_block_centres():
    """Two blocks side by side: the boundary falls where the interpolated scores cross."""
    scores = np.zeros((2, 1, 2), np.float32)
    scores[:, 0, 0] = (0.9, 0.1)
    scores[:, 0, 1] = (0.1, 0.9)
    usable = np.ones((1, 2), bool)
    symmetric = pixel_labels(scores, usable, 4, (0, 1, 0, 2), np.uint8)
    assert symmetric[0].tolist() == [1, 1, 1, 1, 2, 2, 2, 2]  # on the block edge
    scores[:, 0, 0] = (0.55, 0.45)  # the left block is barely sure: its outer pixels go to the right's id
    shifted = pixel_labels(scores, usable, 4, (0, 1, 0, 2), np.uint8)
    assert shifted[0].tolist() == [1, 1, 2, 2, 2, 2, 2, 2]
    usable[0, 1] = False  # next to a block that is not refined a pixel keeps its own block's id
    assert pixel_labels(scores, usable, 4, (0, 1, 0, 2), np.uint8)[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_a_window_with_its_halo_gives_the_blocks_of_the_whole_raster():
    rng = np.random.default_rng(2)
    truth, labels, features, centres = speckled(rng)
    features = features.astype(np.float32)
    model = GraphModel(centres=centres, scale2=1.5, temperature=0.8, offsets=graph_offsets(12), spatial_weight=0.5,
                       mix=0.9, iterations=3)
    pixels = pixels_of(labels).astype(np.uint8)
    usable = labels > 0

    def scores(rows):
        shares = label_shares(pixels[rows.start * STRIDE : rows.stop * STRIDE], labels[rows], STRIDE, 3)
        return refine_window(features[:, rows], shares, usable[rows], model)

    whole = scores(slice(0, 40))
    halo = model.iterations * model.radius
    assert halo + 1 == model.halo == 7
    part = scores(slice(20 - halo, 30 + halo))
    assert np.array_equal(part[:, halo:-halo], whole[:, 20:30])  # bit for bit
    short = scores(slice(20 - halo + 1, 30 + halo))
    assert not np.array_equal(short[:, halo - 1 : -halo], whole[:, 20:30])  # the halo is needed


def test_scan_index_holds_neighbour_ids_whatever_the_windows(tmp_path, kampala_pair):
    """The calibration sample is the same for strips and tiny tiles (a block's right and lower neighbours are read
    across window edges)."""
    labels, features = kampala_pair
    a = refine_knn(labels, features, str(tmp_path / "a.tif"), index_size=700)
    b = refine_knn(labels, features, str(tmp_path / "b.tif"), index_size=700, memory_mb=0.02)
    assert b.windows > 50 and a.scale == b.scale
    assert knn_refine.INDEX_SIZE >= 10_000
