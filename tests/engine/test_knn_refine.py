"""refine_knn on real GeoTIFFs: exact tiling, determinism, nodata, no collapse, contract, errors (both formulations);
the predecessor's formulation by hand. The graph formulation's own behaviour: tests/engine/test_knn_graph.py."""

import math
import os
import sys
from fractions import Fraction

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.labels import read_metadata, write_metadata
from map_segmenter.engine.runtime.errors import Cancelled, InputError, OutputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps import knn_global, latent_graph
from map_segmenter.engine.steps.knn_refine import (
    PREDECESSOR_DEFAULTS,
    block_seeds,
    initial_posteriors,
    refine_knn,
    smooth,
)
from map_segmenter.engine.steps.neighbours import NeighbourIndex, brute_force

from helpers import GT, read_array, write_pair, write_raster

PREDECESSOR = dict(method="predecessor", **PREDECESSOR_DEFAULTS)  # the earlier formulation with its own defaults


# ------------------------------------------------------------------ hand-checked


# One feature channel; row 0: four blocks of segment 1 at f = 0; row 1: three blocks of segment 2 at f = 10 and
# one block labelled 1 at f = 10 (the "mislabelled" block). Centres 0 and 10.
HAND_SEEDS = np.array([[1, 1, 1, 1], [2, 2, 2, 1]])
HAND_FEATURES = np.array([[[0, 0, 0, 0], [10, 10, 10, 10]]], float)
# s^2 = mean squared distance to the own centre = 100 / 8 = 12.5; with T = 2: logits -d^2 / 25.
SOFT = 1 / (1 + math.exp(-4))  # softmax of (0, -4)


def test_initial_posteriors_and_one_smoothing_step_by_hand():
    features = np.array([[0.0, 10.0, 10.0]], np.float32)
    p0 = initial_posteriors(features, np.array([1, 2, 1]), np.array([[0.0], [10.0]]), 12.5, 2.0)
    expected = np.array([[0.5 * SOFT + 0.5, 0.5 * (1 - SOFT)],
                         [0.5 * (1 - SOFT), 0.5 * SOFT + 0.5],
                         [0.5 * (1 - SOFT) + 0.5, 0.5 * SOFT]])
    assert np.allclose(p0, expected, atol=1e-6)  # (0.991007, 0.008993), (0.008993, 0.991007), (0.508993, 0.491007)
    index = np.array([expected[2], expected[1], expected[1], expected[1]], np.float32)  # the four points at f = 10
    step = smooth(p0[2:3], np.array([[0, 1, 2, 3]]), index, 0.65)
    mean = (expected[2] + 3 * expected[1]) / 4  # (0.133993, 0.866007)
    assert np.allclose(step, 0.35 * expected[2] + 0.65 * mean, atol=1e-6)  # (0.265243, 0.734757)
    assert step[0, 1] > step[0, 0]


def test_hand_checked_raster(tmp_path):
    labels, features = write_pair(tmp_path, HAND_SEEDS, HAND_FEATURES, centres=[[0.0], [10.0]])
    options = dict(neighbors=4, temperature=2.0, spatial_weight=0.01, iterations=1, method="predecessor")
    result = refine_knn(labels, features, str(tmp_path / "out.tif"), mix=0.65, **options)
    assert result.scale == 12.5 and result.index_points == 8 and result.centres_source == "metadata"
    expected = np.repeat(np.repeat(np.array([[1, 1, 1, 1], [2, 2, 2, 2]]), 2, axis=0), 2, axis=1)
    assert np.array_equal(read_array(tmp_path / "out.tif"), expected)  # the mislabelled block joins segment 2
    # p0 alone (no iteration) or no mixing keep the seed: 0.508993 > 0.491007
    refine_knn(labels, features, str(tmp_path / "still.tif"), mix=0.0, **options)
    refine_knn(labels, features, str(tmp_path / "none.tif"), **{**options, "iterations": 0})
    assert np.array_equal(read_array(tmp_path / "still.tif"), read_array(labels))
    assert np.array_equal(read_array(tmp_path / "none.tif"), read_array(labels))


def test_block_seed_is_the_first_non_zero_pixel_of_the_block():
    pixels = np.array([[0, 0, 3, 3, 5],
                       [0, 7, 3, 3, 0],
                       [0, 0, 0, 0, 0]], np.uint8)
    # blocks of 2: [[0,0],[0,7]] -> 7; [[3,3],[3,3]] -> 3; [[5],[0]] -> 5 (partial); bottom row -> 0, 0, 0
    assert block_seeds(pixels, 2).tolist() == [[7, 3, 5], [0, 0, 0]]
    assert block_seeds(pixels, 3).tolist() == [[3, 3]]  # row-major: (0, 2) comes before (1, 1)
    assert block_seeds(pixels, 1).tolist() == pixels.tolist()


# ------------------------------------------------------------------ exact tiling, determinism


@pytest.mark.parametrize("method", [{}, PREDECESSOR], ids=["graph", "predecessor"])
def test_tiled_equals_untiled_and_reruns_are_byte_identical(tmp_path, kampala_pair, method):
    labels, features = kampala_pair
    options = {**method, "index_size": 3000, "seed": 5}  # a real sample: 3000 of the 12740 blocks
    whole = refine_knn(labels, features, str(tmp_path / "whole.tif"), memory_mb=256, **options)
    reference = read_array(tmp_path / "whole.tif")
    assert whole.windows == 1
    for memory in (0.02, 0.1, 0.5):  # from 20 px tiles to strips
        result = refine_knn(labels, features, str(tmp_path / f"m{memory}.tif"), memory_mb=memory, **options)
        assert np.array_equal(read_array(tmp_path / f"m{memory}.tif"), reference)
        assert result.windows > 1
    assert refine_knn(labels, features, str(tmp_path / "tiny.tif"), memory_mb=0.02, **options).windows > 50
    refine_knn(labels, features, str(tmp_path / "one_thread.tif"), workers=1, **options)
    assert (tmp_path / "one_thread.tif").read_bytes() == (tmp_path / "whole.tif").read_bytes()
    refine_knn(labels, features, str(tmp_path / "again.tif"), **options)
    assert (tmp_path / "again.tif").read_bytes() == (tmp_path / "whole.tif").read_bytes()
    # the refinement really changes labels, so the equalities above are not trivial
    original = read_array(labels)
    assert 200 < (reference != original).sum() < 0.2 * original.size
    assert set(np.unique(reference)) == set(np.unique(original)) == set(range(1, 7))


def test_index_seed_matters_only_through_the_sample(tmp_path, kampala_pair):
    labels, features = kampala_pair
    for seed in (0, 9):  # the index holds every block: the seed cannot change anything
        refine_knn(labels, features, str(tmp_path / f"all{seed}.tif"), seed=seed, index_size=20_000)
    assert np.array_equal(read_array(tmp_path / "all0.tif"), read_array(tmp_path / "all9.tif"))
    a = refine_knn(labels, features, str(tmp_path / "s0.tif"), seed=0, index_size=500)
    b = refine_knn(labels, features, str(tmp_path / "s9.tif"), seed=9, index_size=500)
    assert a.index_points == b.index_points == 500
    assert not np.array_equal(read_array(tmp_path / "s0.tif"), read_array(tmp_path / "s9.tif"))


def test_scaling_the_features_changes_nothing(tmp_path, kampala_pair):
    """TEMPERATURE and SPATIAL_WEIGHT are relative to the feature spread (x4 is exact in binary floats)."""
    labels, features = kampala_pair
    values = read_array(features)
    centres = np.asarray(read_metadata(gdal.Open(labels))["centres"])
    seeds = read_array(labels)
    meta = read_metadata(gdal.Open(features))
    for factor in (1.0, 4.0):
        dataset = gdal.GetDriverByName("GTiff").CreateCopy(str(tmp_path / f"f{factor}.tif"), gdal.Open(features))
        for band in range(values.shape[0]):
            dataset.GetRasterBand(band + 1).WriteArray(values[band] * np.float32(factor))
        write_metadata(dataset, **meta)
        dataset = None
        label_copy = gdal.GetDriverByName("GTiff").CreateCopy(str(tmp_path / f"l{factor}.tif"), gdal.Open(labels))
        write_metadata(label_copy, centres=(centres * factor).tolist())
        label_copy = None
        refine_knn(str(tmp_path / f"l{factor}.tif"), str(tmp_path / f"f{factor}.tif"),
                   str(tmp_path / f"out{factor}.tif"), index_size=2000)
    assert np.array_equal(read_array(tmp_path / "out1.0.tif"), read_array(tmp_path / "out4.0.tif"))
    assert not np.array_equal(read_array(tmp_path / "out1.0.tif"), seeds)


# ------------------------------------------------------------------ no collapse, centres


def separated(shape=(30, 40), segments=5, seed=0):
    """Blocks with ids in spatial patches and features far apart per id; id 1 is NOT the darkest or first."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    seeds = ((rows // 6) * 7 + (cols // 8) * 3) % segments + 1
    centres = rng.permutation(np.arange(segments))[:, None] * np.array([[40.0, -25.0, 10.0]]) + 5.0
    features = centres[seeds - 1] + rng.normal(0.0, 1.0, (*shape, 3))
    return seeds, np.moveaxis(features, -1, 0), centres


def only_corners_differ(refined, labels):
    """True when ``refined`` differs from ``labels`` only next to corners where three or more ids meet (pixels
    interpolated between four blocks of other ids), in at most 0.5 % of the pixels."""
    changed = np.argwhere(refined != labels)
    padded = np.pad(labels, 1, mode="edge")
    return len(changed) <= 0.005 * labels.size and all(
        len(np.unique(padded[y : y + 3, x : x + 3])) >= 3 for y, x in changed)


@pytest.mark.parametrize("method", [{}, PREDECESSOR], ids=["graph", "predecessor"])
def test_well_separated_features_never_collapse(tmp_path, method):
    seeds, features, centres = separated()
    labels, features_path = write_pair(tmp_path, seeds, features, stride=3, size=(89, 118), centres=centres)
    out = tmp_path / "out.tif"
    result = refine_knn(labels, features_path, str(out), **{**method, "index_size": 400})
    refined = read_array(out)
    assert only_corners_differ(refined, read_array(labels))  # every block is deep inside its own cluster
    assert set(np.unique(refined)) == {1, 2, 3, 4, 5}
    assert result.segments == 5 and np.array_equal(result.centres, centres)
    # the same without centres in the metadata: recomputed per id, same result
    plain_labels = write_raster(tmp_path / "plain.tif", read_array(labels), GT, nodata=0)
    again = refine_knn(plain_labels, features_path, str(tmp_path / "again.tif"), **{**method, "index_size": 400})
    assert again.centres_source == "recomputed"
    assert only_corners_differ(read_array(tmp_path / "again.tif"), read_array(labels))
    means = np.array([features[:, seeds == i].astype(np.float32).astype(np.float64).mean(axis=1)
                      for i in range(1, 6)])
    assert np.allclose(again.centres, means, rtol=1e-12, atol=1e-12)


def test_recomputed_centres_are_exact_and_window_independent(tmp_path, kampala_pair):
    labels, features = kampala_pair
    plain = str(tmp_path / "plain.tif")
    dataset = gdal.GetDriverByName("GTiff").CreateCopy(plain, gdal.Open(labels))
    dataset.SetMetadata({})  # no centres: they are recomputed
    dataset = None
    assert read_metadata(gdal.Open(plain)) == {}
    whole = refine_knn(plain, features, str(tmp_path / "whole.tif"), index_size=2000)
    tiled = refine_knn(plain, features, str(tmp_path / "tiled.tif"), index_size=2000, memory_mb=0.03)
    assert tiled.windows > 10 and whole.centres_source == "recomputed"
    assert np.array_equal(whole.centres, tiled.centres)  # bit for bit
    assert np.array_equal(read_array(tmp_path / "whole.tif"), read_array(tmp_path / "tiled.tif"))
    seeds = read_array(labels)[::4, ::4]
    values = read_array(features)
    for segment in range(1, 7):
        cells = (seeds == segment) & np.isfinite(values[0])
        exact = [float(sum(map(Fraction, values[c][cells].tolist())) / int(cells.sum()))
                 for c in range(values.shape[0])]
        assert np.array_equal(whole.centres[segment - 1], exact)  # correctly rounded means


def test_centres_of_other_features_are_recomputed(tmp_path):
    seeds, features, centres = separated(segments=3)
    labels, features_path = write_pair(tmp_path, seeds, features, centres=centres,
                                       feature_meta=dict(kind="other", stride=2))
    dataset = gdal.Open(labels, gdal.GA_Update)
    write_metadata(dataset, features=dict(kind="lab_mean_std", stride=2))
    dataset = None
    result = refine_knn(labels, features_path, str(tmp_path / "out.tif"))
    assert result.centres_source == "recomputed"
    meta = read_metadata(gdal.Open(str(tmp_path / "out.tif")))
    assert meta["knn"]["centres"] == "recomputed"


# ------------------------------------------------------------------ nodata, grids, contract


def test_nodata_pixels_stay_nodata_and_blocks_without_features_keep_their_labels(tmp_path, kampala_pair):
    labels, features = kampala_pair
    pixels = read_array(labels)
    pixels[100:181, 50:303] = 0  # a hole with unaligned edges: partial blocks keep some labelled pixels
    holed = write_raster(tmp_path / "holed.tif", pixels, gdal.Open(labels).GetGeoTransform(), nodata=0)
    dataset = gdal.Open(holed, gdal.GA_Update)
    dataset.SetProjection(gdal.Open(labels).GetProjection())
    write_metadata(dataset, **read_metadata(gdal.Open(labels)))
    dataset = None
    values = read_array(features)
    values[:, 60:70, 10:40] = np.nan  # cells without features, inside the labelled area
    unfeatured = tmp_path / "unfeatured.tif"
    dataset = gdal.GetDriverByName("GTiff").CreateCopy(str(unfeatured), gdal.Open(features))
    for band in range(values.shape[0]):
        dataset.GetRasterBand(band + 1).WriteArray(values[band])
    dataset = None
    refine_knn(holed, str(unfeatured), str(tmp_path / "out.tif"), index_size=3000)
    refine_knn(holed, str(unfeatured), str(tmp_path / "tiled.tif"), index_size=3000, memory_mb=0.03)
    out = read_array(tmp_path / "out.tif")
    assert np.array_equal(out, read_array(tmp_path / "tiled.tif"))
    assert np.array_equal(out == 0, pixels == 0)
    assert np.array_equal(out[240:280, 40:160], pixels[240:280, 40:160])  # no features: labels unchanged
    assert (out != pixels).sum() > 100


def test_output_is_on_the_label_grid_with_the_label_contract(tmp_path, kampala_pair):
    labels, features = kampala_pair
    out = tmp_path / "refined.tif"
    refine_knn(labels, features, str(out), neighbors=8, temperature=1.5, mix=0.5, iterations=3,
               spatial_weight=0.2, seed=4, index_size=2500)
    src, dst = gdal.Open(labels), gdal.Open(str(out))
    assert (dst.RasterXSize, dst.RasterYSize) == (517, 389)
    assert dst.GetGeoTransform() == src.GetGeoTransform() and dst.GetProjection() == src.GetProjection()
    band = dst.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    table, source_table = band.GetRasterColorTable(), src.GetRasterBand(1).GetRasterColorTable()
    assert [table.GetColorEntry(i) for i in range(7)] == [source_table.GetColorEntry(i) for i in range(7)]
    meta, source_meta = read_metadata(dst), read_metadata(src)
    assert meta["k"] == 6 and meta["method"] == "knn_refine" and meta["seed"] == 4
    assert meta["centres"] == source_meta["centres"] and meta["features"] == source_meta["features"]
    assert meta["knn"]["neighbors"] == 8 and meta["knn"]["iterations"] == 3 and meta["knn"]["index_points"] == 2500
    assert meta["knn"]["spatial_weight"] == 0.2 and meta["refined_from"]["method"] == "kmeans"
    assert (tmp_path / "refined.qml").read_text().count("<paletteEntry") == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refined.qml", "refined.tif"]


def test_non_georeferenced_pair_and_sixteen_bit_labels(tmp_path):
    seeds, features, centres = separated(shape=(20, 25), segments=4)
    pixels = np.repeat(np.repeat(seeds, 4, axis=0), 4, axis=1)[:78, :97].astype(np.uint16)
    labels = write_raster(tmp_path / "l.tif", pixels, geotransform=None)
    feature_path = write_raster(tmp_path / "f.tif", features.astype(np.float32), geotransform=None)
    dataset = gdal.Open(feature_path, gdal.GA_Update)
    write_metadata(dataset, stride=4)
    dataset = None
    result = refine_knn(labels, feature_path, str(tmp_path / "o.tif"))
    out = gdal.Open(str(tmp_path / "o.tif"))
    assert out.GetGeoTransform(can_return_null=True) is None and out.GetRasterBand(1).DataType == gdal.GDT_Byte
    assert only_corners_differ(out.ReadAsArray(), pixels) and result.segments == 4


def test_stride_is_read_from_the_geotransform_when_metadata_lacks_it(tmp_path):
    seeds, features, centres = separated(shape=(12, 16), segments=3)
    seeds[3, 5] = 1 if seeds[3, 5] != 1 else 2  # one mislabelled block, to be repaired
    labels, with_meta = write_pair(tmp_path, seeds, features, stride=3, size=(35, 47), centres=centres)
    without = write_pair(tmp_path, seeds, features, stride=3, size=(35, 47), name="bare", feature_meta={})[1]
    assert "stride" not in read_metadata(gdal.Open(without))
    refine_knn(labels, with_meta, str(tmp_path / "a.tif"))
    refine_knn(labels, without, str(tmp_path / "b.tif"))
    assert np.array_equal(read_array(tmp_path / "a.tif"), read_array(tmp_path / "b.tif"))
    fixed = read_array(tmp_path / "a.tif")
    assert fixed[9, 15] != read_array(labels)[9, 15]  # block (3, 5) took the label of its look-alikes


# ------------------------------------------------------------------ neighbours


def test_tree_neighbours_equal_brute_force_and_do_not_depend_on_the_batch():
    rng = np.random.default_rng(3)
    index = rng.normal(size=(3000, 8))
    queries = np.concatenate([rng.normal(size=(700, 8)), index[:50]])
    tree = NeighbourIndex(index, workers=1)
    found = tree.query(queries, 12)
    assert np.array_equal(found, brute_force(index, queries, 12))
    assert np.array_equal(found[-50:, 0], np.arange(50))  # an index point is its own nearest neighbour
    parts = np.concatenate([NeighbourIndex(index, workers=-1).query(queries[i : i + 97], 12)
                            for i in range(0, len(queries), 97)])
    assert np.array_equal(parts, found)


# ------------------------------------------------------------------ errors, cancel


def refused(tmp_path, error, text, labels, features, output=None, **options):
    output = output or str(tmp_path / "never.tif")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error) as raised:
        refine_knn(labels, features, output, **options)
    assert text in str(raised.value)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written
    return str(raised.value)


def test_bad_inputs_give_actionable_errors_and_write_nothing(tmp_path):
    seeds, features, centres = separated(shape=(10, 12), segments=3)
    labels, feats = write_pair(tmp_path, seeds, features, centres=centres)
    message = refused(tmp_path, InputError, "holds Float32 values", feats, feats)
    assert "FEATURES" in message
    refused(tmp_path, InputError, "holds Byte values", labels, labels)
    shifted = write_pair(tmp_path, seeds, features, name="shifted",
                         feature_gt=(500010.0, 1.0, 0.0, 5200000.0, 0.0, -1.0))[1]
    refused(tmp_path, InputError, "not on matching grids", labels, shifted)
    coarse = write_pair(tmp_path, seeds[::2, ::2], features[:, ::2, ::2], stride=4, name="coarse",
                        feature_meta=dict(kind="test", stride=2))[1]
    message = refused(tmp_path, InputError, "not on matching grids", labels, coarse)
    assert "it should be 12 x 10 cells, it is 6 x 5" in message
    other_crs = write_pair(tmp_path, seeds, features, name="crs", epsg=32634)[1]
    refused(tmp_path, InputError, "their CRS differ", labels, other_crs)
    bare = write_raster(tmp_path / "bare.tif", features.astype(np.float32), geotransform=None)
    refused(tmp_path, InputError, "does not say its stride", labels, bare)
    plain = write_raster(tmp_path / "plain.tif", read_array(labels), GT, nodata=0)
    empty = write_pair(tmp_path, seeds, np.full_like(features, np.nan), name="empty")[1]
    refused(tmp_path, InputError, "cannot be recomputed", plain, empty)
    too_many = write_pair(tmp_path, seeds + 2, features, name="many", centres=centres)[0]
    refused(tmp_path, InputError, "has segment id 4, but its metadata says K = 3", too_many, feats)
    signed = read_array(labels).astype(np.int16)
    signed[5, 7] = -2  # not a block's first pixel: every pixel is checked
    negative = write_raster(tmp_path / "negative.tif", signed, GT)
    refused(tmp_path, InputError, "negative segment id (-2)", negative, feats)
    refused(tmp_path, OutputError, "is also an input", labels, feats, output=labels)
    refused(tmp_path, OutputError, "is also an input", labels, feats, output=feats)
    refused(tmp_path, OutputError, "does not exist", labels, feats, output=str(tmp_path / "no" / "x.tif"))
    refused(tmp_path, InputError, "does not exist", str(tmp_path / "missing.tif"), feats)
    for name, value in (("neighbors", 0), ("temperature", 0.0), ("mix", 1.5), ("iterations", -1),
                        ("spatial_weight", -0.1), ("index_size", 0)):
        refused(tmp_path, InputError, name.upper(), labels, feats, **{name: value})
    refused(tmp_path, InputError, "METHOD must be one of graph, predecessor", labels, feats, method="knn")


def test_missing_scipy_says_how_to_install_it_and_only_the_predecessor_needs_it(tmp_path, monkeypatch):
    seeds, features, centres = separated(shape=(10, 12), segments=3)
    labels, feats = write_pair(tmp_path, seeds, features, centres=centres)
    monkeypatch.setitem(sys.modules, "scipy.spatial", None)  # what an import of a missing package does
    message = refused(tmp_path, InputError, "needs SciPy", labels, feats, method="predecessor")
    assert "python3-scipy" in message and "pip install scipy" in message
    refine_knn(labels, feats, str(tmp_path / "graph.tif"))  # the default formulation needs numpy and GDAL only


@pytest.mark.parametrize("stop_after", [1, 4, 30])
@pytest.mark.parametrize("method", [{}, PREDECESSOR], ids=["graph", "predecessor"])
def test_cancel_leaves_nothing_at_the_destination(tmp_path, kampala_pair, stop_after, method):
    labels, features = kampala_pair
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > stop_after

    with pytest.raises(Cancelled):
        refine_knn(labels, features, str(tmp_path / "c.tif"), memory_mb=0.05,
                   progress=Progress(is_cancelled=cancelled), **method)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("method, stages", [
    ({}, ("Sampling the index", "Refining blocks")),
    (PREDECESSOR, ("Counting segments", "Sampling the index", "Iterating the index", "Refining blocks"))],
    ids=["graph", "predecessor"])
def test_progress_moves_through_every_stage(tmp_path, kampala_pair, method, stages):
    labels, features = kampala_pair
    reports = []
    refine_knn(labels, features, str(tmp_path / "p.tif"), memory_mb=0.1,
               progress=Progress(report=lambda f, m: reports.append((f, m))), **method)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    messages = " ".join(m for _, m in reports)
    for stage in stages:
        assert stage in messages


def test_chunks_do_not_change_labels(tmp_path, kampala_pair, monkeypatch):
    labels, features = kampala_pair
    refine_knn(labels, features, str(tmp_path / "a.tif"), **{**PREDECESSOR, "index_size": 3000})
    refine_knn(labels, features, str(tmp_path / "graph_a.tif"), index_size=3000)
    monkeypatch.setattr(knn_global, "CHUNK", 97)
    monkeypatch.setattr(latent_graph, "ROW_BAND", 3)
    refine_knn(labels, features, str(tmp_path / "b.tif"), **{**PREDECESSOR, "index_size": 3000})
    refine_knn(labels, features, str(tmp_path / "graph_b.tif"), index_size=3000)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    assert (tmp_path / "graph_a.tif").read_bytes() == (tmp_path / "graph_b.tif").read_bytes()


def test_pixel_level_boundaries_survive_the_predecessors_refinement(tmp_path, kampala_pair):
    """Blurred labels are not block-constant: with ITERATIONS=0 the output is LABELS itself (both formulations),
    and with the predecessor's iterations only the pixels that carried a changed block's old label change (to
    that block's new label)."""
    from map_segmenter.engine.steps.blur import blur_labels

    labels, features = kampala_pair
    blurred = str(tmp_path / "blurred.tif")
    blur_labels(labels, blurred, strength="high")
    before = read_array(blurred)
    height, width = before.shape
    seeds = np.repeat(np.repeat(block_seeds(before, 4), 4, 0), 4, 1)[:height, :width]
    assert (before != seeds).sum() > 1000  # many pixels differ from their block's seed: pixel-level boundaries
    for method in ({}, PREDECESSOR):
        refine_knn(blurred, features, str(tmp_path / "kept.tif"), **{**method, "iterations": 0})
        assert np.array_equal(read_array(tmp_path / "kept.tif"), before)
    refine_knn(blurred, features, str(tmp_path / "refined.tif"), **{**PREDECESSOR, "iterations": 3, "mix": 0.9})
    after = read_array(tmp_path / "refined.tif")
    moved = after != before
    assert moved.any() and (before[moved] == seeds[moved]).all()
    assert np.array_equal(after[before != seeds], before[before != seeds])


def test_features_of_another_stride_warn_and_the_output_says_its_stride(tmp_path, kampala_crop, kampala_pair):
    labels, _ = kampala_pair  # block 4
    coarse = str(tmp_path / "features8.tif")
    segment_kmeans(kampala_crop, str(tmp_path / "labels8.tif"), segments=6, block=8, features_path=coarse)
    warnings = []
    refine_knn(labels, coarse, str(tmp_path / "out.tif"), progress=Progress(warn=warnings.append))
    assert len(warnings) == 1 and "LABELS were made on a grid of 4 px but FEATURES has 8 px cells" in warnings[0]
    assert read_metadata(gdal.Open(str(tmp_path / "out.tif")))["features"]["stride"] == 8


def test_a_neighbour_table_beyond_the_budget_is_refused_before_any_work(tmp_path, kampala_pair):
    labels, features = kampala_pair
    out = tmp_path / "out.tif"
    with pytest.raises(InputError, match=r"NEIGHBORS 1000 x INDEX_SIZE 120000 needs a 458 MB neighbour table \(at most "
                                         r"256 MB.*raise MEMORY_MB to 916"):
        refine_knn(labels, features, str(out), **{**PREDECESSOR, "neighbors": 1000})
    assert not out.exists()
    many = refine_knn(labels, features, str(out), **{**PREDECESSOR, "neighbors": 1000, "memory_mb": 1000})
    assert many.segments == 6 and out.exists()
