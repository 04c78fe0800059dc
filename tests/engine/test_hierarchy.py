"""Automatic K (SEGMENTS = 0), the merge tree every segmentation writes, and segmenter:merge's re-cut."""

import hashlib
import json

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.metadata import read_metadata
from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation import hierarchy, kmeans
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.merge import merge_labels

from helpers import ROOT, read_array, write_raster

MODEL = str(ROOT / "onnx_models" / "student_s4_v1.onnx")


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# ------------------------------------------------------------------------------------------------- the merge tree


def test_merge_tree_is_wards_linkage_with_exact_costs():
    centres, sizes = np.array([[0.0], [1.0], [10.0], [10.5]]), np.array([1, 1, 1, 3])
    merges = hierarchy.merge_tree(centres, sizes)
    # (3, 4): 1*3/4 * 0.25 / 6; (1, 2): 1*1/2 * 1 / 6; (5, 6): sizes 2 and 4 at 0.5 and 10.375
    assert merges == [[3, 4, pytest.approx(0.75 * 0.25 / 6, abs=0)], [1, 2, pytest.approx(0.5 / 6, abs=0)],
                      [5, 6, pytest.approx(2 * 4 / 6 * 9.875**2 / 6, rel=1e-15)]]
    assert hierarchy.cut(merges, 4, 2).tolist() == [0, 1, 1, 2, 2]
    assert hierarchy.cut(merges, 4, 3).tolist() == [0, 1, 2, 3, 3]
    assert hierarchy.cut(merges, 4, 4).tolist() == [0, 1, 2, 3, 4]
    new_centres, new_sizes, rest = hierarchy.merged(centres, sizes, merges, 2)
    np.testing.assert_array_equal(new_centres, [[0.5], [(10 + 3 * 10.5) / 4]])
    assert new_sizes.tolist() == [2, 4] and rest == [[1, 2, merges[2][2]]]


def test_a_cut_of_a_cut_is_the_cut_and_the_rest_of_the_tree_is_the_tree_of_the_merged_centres():
    rng = np.random.default_rng(5)
    centres, sizes = rng.normal(size=(9, 4)) * 10, rng.integers(1, 500, 9)
    merges = hierarchy.merge_tree(centres, sizes)
    for k in range(2, 9):
        new_centres, new_sizes, rest = hierarchy.merged(centres, sizes, merges, k)
        again = hierarchy.merge_tree(new_centres, new_sizes)
        assert [m[:2] for m in again] == [m[:2] for m in rest]
        np.testing.assert_allclose([m[2] for m in again], [m[2] for m in rest], rtol=1e-9)
        for j in range(2, k + 1):
            np.testing.assert_array_equal(hierarchy.cut(rest, k, j)[hierarchy.cut(merges, 9, k)],
                                          hierarchy.cut(merges, 9, j))


def test_the_criterion_finds_well_separated_clusters_and_is_deterministic():
    """Equal clusters at the corners of a simplex: merging two of k loses 1 / (k - 1) of the variance."""
    rng = np.random.default_rng(0)
    for true_k in (2, 3, 5, 7):
        means = np.eye(7)[:true_k] * 80
        points = means[rng.integers(true_k, size=20_000)] + rng.normal(size=(20_000, 7))
        k, values, start = hierarchy.choose(points, 2, 12, seed=1)
        assert k == true_k, values
        assert values[true_k] == pytest.approx(1 / (true_k - 1), rel=0.03)
        assert all(values[j] < 0.001 for j in range(true_k + 1, 13))
        assert start.shape == (true_k, 7) and sorted(values) == list(range(2, 13))
        again = hierarchy.choose(points, 2, 12, seed=1)
        assert again[0] == k and again[1] == values and np.array_equal(again[2], start)


def test_the_criterion_keeps_to_the_range():
    rng = np.random.default_rng(2)
    means = np.eye(6) * 80
    points = means[rng.integers(6, size=5000)] + rng.normal(size=(5000, 6))
    assert hierarchy.choose(points, 2, 4)[0] == 4
    assert hierarchy.choose(points, 8, 10)[0] == 8  # no merge above 6 loses 4 %: the smallest K allowed
    assert sorted(hierarchy.choose(points, 8, 10)[1]) == [8, 9, 10]


# --------------------------------------------------------------------------------------- segmentation, SEGMENTS 0


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    """A 480 x 400 px RGB raster of 4 kinds of surface in quadrants, with pixel noise."""
    rng = np.random.default_rng(3)
    colours = np.array([[30, 60, 30], [200, 190, 170], [90, 90, 100], [160, 40, 40]])
    layout = np.kron(np.array([[0, 1], [2, 3]]), np.ones((200, 240), int))
    pixels = colours[layout].transpose(2, 0, 1) + rng.normal(0, 6, size=(3, 400, 480))
    path = tmp_path_factory.mktemp("patches") / "patches.tif"
    write_raster(path, np.clip(pixels, 0, 255).astype(np.uint8))
    return str(path)


def test_segments_0_chooses_k_logs_and_records_the_evidence(patches, tmp_path):
    notes = []
    result = segment_kmeans(patches, str(tmp_path / "auto.tif"), segments=0, progress=Progress(log=notes.append))
    assert result.criterion["k"] == 4 == len(result.centres) == result.present
    assert any(note.startswith("Automatic K (K 2..12;") and note.endswith("chosen K = 4") for note in notes), notes
    items = read_metadata(gdal.Open(str(tmp_path / "auto.tif")))
    assert items["k"] == 4 and items["criterion"] == json.loads(json.dumps(result.criterion))
    assert [k for k, _ in items["criterion"]["values"]] == list(range(2, 13))
    assert len(items["sizes"]) == 4 and len(items["merges"]) == 3
    assert sum(items["sizes"]) == result.valid_blocks  # fewer blocks than the sample size: all are sampled


def test_segments_0_is_the_same_bytes_tiled_untiled_and_rerun(patches, tmp_path):
    segment_kmeans(patches, str(tmp_path / "a.tif"), segments=0)
    segment_kmeans(patches, str(tmp_path / "b.tif"), segments=0, memory_mb=0.05)
    segment_kmeans(patches, str(tmp_path / "c.tif"), segments=0)
    np.testing.assert_array_equal(read_array(tmp_path / "a.tif"), read_array(tmp_path / "b.tif"))
    first, tiled = (read_metadata(gdal.Open(str(tmp_path / name))) for name in ("a.tif", "b.tif"))
    assert first == tiled and first["criterion"]["k"] == 4
    assert digest(tmp_path / "a.tif") == digest(tmp_path / "c.tif")


def test_the_k_range_bounds_the_choice_and_is_checked(patches, tmp_path):
    result = segment_kmeans(patches, str(tmp_path / "narrow.tif"), segments=0, k_min=5, k_max=7)
    assert 5 <= len(result.centres) <= 7 and result.criterion["k_min"] == 5
    with pytest.raises(InputError, match=r"K_MIN \(6\) must not be greater than K_MAX \(3\)"):
        segment_kmeans(patches, str(tmp_path / "x.tif"), segments=0, k_min=6, k_max=3)
    with pytest.raises(InputError, match="SEGMENTS must be 0 \\(automatic\\) or between 2 and 254; got 1"):
        segment_kmeans(patches, str(tmp_path / "x.tif"), segments=1)


def test_a_fixed_k_run_writes_its_tree_and_no_criterion(patches, tmp_path):
    result = segment_kmeans(patches, str(tmp_path / "k6.tif"), segments=6)
    items = read_metadata(gdal.Open(str(tmp_path / "k6.tif")))
    assert "criterion" not in items and result.criterion is None
    assert len(items["sizes"]) == 6 and sum(items["sizes"]) == result.valid_blocks
    assert items["merges"] == hierarchy.merge_tree(np.array(items["centres"]), np.array(items["sizes"]))


def test_cnn_segments_0_chooses_k_on_the_embeddings(patches, tmp_path):
    pytest.importorskip("onnxruntime")
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

    first = segment_cnn(patches, str(tmp_path / "a.tif"), MODEL, segments=0)
    second = segment_cnn(patches, str(tmp_path / "b.tif"), MODEL, segments=0, memory_mb=1, tile_size=96)
    assert first.criterion == second.criterion and 2 <= first.criterion["k"] <= 12
    assert len(first.centres) == first.criterion["k"]
    np.testing.assert_array_equal(read_array(tmp_path / "a.tif"), read_array(tmp_path / "b.tif"))
    items = read_metadata(gdal.Open(str(tmp_path / "a.tif")))
    assert items["criterion"]["k"] == items["k"] and len(items["merges"]) == items["k"] - 1


# ------------------------------------------------------------------------------------------------------ the re-cut


@pytest.fixture(scope="module")
def eight(kampala_crop, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("merge") / "k8.tif")
    segment_kmeans(kampala_crop, path, segments=8, seed=2)
    return path


def test_merge_is_the_lookup_table_of_the_tree_and_writes_a_label_raster(eight, tmp_path):
    items = read_metadata(gdal.Open(eight))
    result = merge_labels(eight, str(tmp_path / "k3.tif"), 3)
    table = hierarchy.cut(items["merges"], 8, 3)
    np.testing.assert_array_equal(read_array(tmp_path / "k3.tif"), table[read_array(eight)])
    assert result.present == 3 and result.from_segments == 8
    merged = read_metadata(gdal.Open(str(tmp_path / "k3.tif")))
    centres, sizes, rest = hierarchy.merged(np.array(items["centres"]), np.array(items["sizes"]), items["merges"], 3)
    assert merged["k"] == 3 and merged["names"] == ["Segment 1", "Segment 2", "Segment 3"]
    assert merged["centres"] == centres.tolist() and merged["sizes"] == sizes.tolist() and merged["merges"] == rest
    assert merged["method"] == "kmeans" and merged["merged"]["k"] == 8
    dataset = gdal.Open(str(tmp_path / "k3.tif"))
    band = dataset.GetRasterBand(1)
    assert band.GetNoDataValue() == 0 and band.GetRasterColorTable().GetCount() >= 4
    assert (tmp_path / "k3.qml").exists()


def test_merge_equals_the_fresh_runs_centres_merged_the_same_way(kampala_crop, eight, tmp_path):
    """A run's labels merged by the raster alone equal the labels of its centres merged by the tree: every block
    nearest to a centre of a group gets the group."""
    segment_kmeans(kampala_crop, str(tmp_path / "again.tif"), segments=8, seed=2)
    merge_labels(str(tmp_path / "again.tif"), str(tmp_path / "again4.tif"), 4)
    merge_labels(eight, str(tmp_path / "k4.tif"), 4)
    assert digest(tmp_path / "again4.tif") == digest(tmp_path / "k4.tif")
    items = read_metadata(gdal.Open(eight))
    groups = hierarchy.groups(items["merges"], 8, 4)
    assert sorted(sum(groups, [])) == list(range(1, 9))


def test_merging_in_steps_equals_merging_at_once_and_tiling_changes_nothing(eight, tmp_path):
    merge_labels(eight, str(tmp_path / "k5.tif"), 5)
    merge_labels(str(tmp_path / "k5.tif"), str(tmp_path / "k5_2.tif"), 2)
    merge_labels(eight, str(tmp_path / "k2.tif"), 2)
    merge_labels(eight, str(tmp_path / "k2_tiled.tif"), 2, memory_mb=0.01)
    np.testing.assert_array_equal(read_array(tmp_path / "k5_2.tif"), read_array(tmp_path / "k2.tif"))
    np.testing.assert_array_equal(read_array(tmp_path / "k2.tif"), read_array(tmp_path / "k2_tiled.tif"))
    assert (read_metadata(gdal.Open(str(tmp_path / "k2.tif")))
            == read_metadata(gdal.Open(str(tmp_path / "k2_tiled.tif"))))
    a, b = (read_metadata(gdal.Open(str(tmp_path / name))) for name in ("k5_2.tif", "k2.tif"))
    assert a["merges"] == b["merges"] and a["sizes"] == b["sizes"]
    np.testing.assert_allclose(a["centres"], b["centres"], rtol=1e-12)


def test_merge_refuses_what_it_cannot_cut(eight, tmp_path):
    with pytest.raises(InputError, match=r"SEGMENTS must be between 2 and the input's K \(8\); got 9"):
        merge_labels(eight, str(tmp_path / "x.tif"), 9)
    plain = tmp_path / "plain.tif"
    write_raster(plain, np.array([[[1, 2], [2, 3]]], np.uint8))
    with pytest.raises(InputError, match="carries no merge tree"):
        merge_labels(str(plain), str(tmp_path / "y.tif"), 2)
    damaged = tmp_path / "damaged.tif"
    gdal.Translate(str(damaged), eight)
    dataset = gdal.Open(str(damaged), gdal.GA_Update)
    dataset.SetMetadataItem("SEGMENTER_MERGES", json.dumps([[1, 1, 0.0]] * 7))
    dataset = None
    with pytest.raises(InputError, match="damaged merge tree: merge 1 joins nodes 1 and 1"):
        merge_labels(str(damaged), str(tmp_path / "z.tif"), 2)
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "z.tif").exists()


def test_sizes_are_the_label_passs_assignment_of_the_sample():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(300, 3))
    centres = points[:4].copy()
    expected = np.bincount(kmeans.assign(points, centres), minlength=4)
    np.testing.assert_array_equal(hierarchy.sizes_of(points, centres), expected)


def test_the_statistics_report_plots_the_criterion_when_present(patches, eight, tmp_path):
    from map_segmenter.engine.steps.statistics import segment_statistics

    segment_kmeans(patches, str(tmp_path / "auto.tif"), segments=0)
    segment_statistics(str(tmp_path / "auto.tif"), str(tmp_path / "auto.csv"), report_path=str(tmp_path / "a.html"))
    page = (tmp_path / "a.html").read_text()
    assert "How K was chosen" in page and "K = 4 (chosen)" in page and page.count('fill="#2b6cb0"') == 1
    assert page.count("K = ") == 11 + 1  # a bar per K in 2..12, and the sentence naming the K chosen
    segment_statistics(eight, str(tmp_path / "k8.csv"), report_path=str(tmp_path / "k8.html"))
    assert "How K was chosen" not in (tmp_path / "k8.html").read_text()


def test_the_criterion_chart_writes_short_bars_values_right_of_the_threshold_line():
    from map_segmenter.engine.steps.statistics import criterion_chart

    chart = criterion_chart({"k": 3, "threshold": 0.04, "values": [[2, 0.5], [3, 0.1], [4, 0.01]]})
    # bars scale to the largest share (0.5 -> 420 px from x = 220); the 4 % line sits at 220 + 33.6
    assert '<line x1="253.6" y1="0" x2="253.6"' in chart
    assert '<text x="646.0" y="16">50.0 %</text>' in chart  # past its bar's end
    assert '<text x="310.0" y="44">10.0 %</text>' in chart
    assert '<text x="259.6" y="72">1.0 %</text>' in chart  # its bar ends at 228.4: moved past the line
