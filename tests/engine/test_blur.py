"""blur_labels / smooth on real GeoTIFFs: hand-computed votes, exact tiling, nodata, ties, contract, errors."""

import os

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.labels import read_metadata, read_reference
from map_segmenter.engine.runtime.errors import Cancelled, InputError, OutputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import Kernel, blur_labels, choose_kernel, make_voter, smooth

from helpers import read_array, write_raster


@pytest.fixture(scope="module")
def kmeans_labels(tmp_path_factory, kampala_crop):
    """Real K-Means labels (8 segments, 4 px blocks) of a 517 x 389 crop: sizes that fit no window."""
    out = tmp_path_factory.mktemp("labels") / "kampala_labels.tif"
    segment_kmeans(kampala_crop, str(out), segments=8, block=4, seed=0)
    return str(out)


def reference_pass(labels, box_radius, boxes):
    """The vote written as its definition: shifted copies summed in int64 over the zero-extended plane."""
    height, width = labels.shape
    reach = box_radius * boxes
    best = np.full(labels.shape, -1, np.int64)
    winner = np.zeros_like(labels)
    for label in range(1, int(labels.max()) + 1):
        votes = np.pad((labels == label).astype(np.int64), reach)
        for _ in range(boxes):
            for axis in (0, 1):
                padded = np.pad(votes, [(box_radius, box_radius) if a == axis else (0, 0) for a in (0, 1)])
                votes = sum(np.take(padded, range(shift, shift + votes.shape[axis]), axis=axis)
                            for shift in range(2 * box_radius + 1))
        key = 2 * votes[reach : reach + height, reach : reach + width] + (labels == label)  # own label wins ties
        winner[key > best] = label
        best = np.maximum(best, key)
    winner[labels == 0] = 0
    return winner


def reference(labels, kernel):
    for _ in range(kernel.total_passes):
        labels = reference_pass(labels, kernel.box_radius, kernel.boxes)
    return labels


def blur(tmp_path, source, name, **options):
    out = tmp_path / f"{name}.tif"
    result = blur_labels(str(source), str(out), **options)
    return read_array(out), result


def test_hand_computed_3x3_majority_removes_a_speckle_and_keeps_tied_pixels(tmp_path):
    labels = np.array([[1, 1, 1, 2, 2],
                       [1, 2, 1, 2, 2],
                       [1, 1, 1, 2, 2],
                       [3, 3, 3, 3, 2],
                       [3, 3, 3, 3, 3]], np.uint8)
    # (1,1) has 8 votes for 1. Ties kept: (0,2) 1:3 v 2:3, (2,2) 1:3 v 2:3 v 3:3, (3,4) 2:3 v 3:3.
    expected = labels.copy()
    expected[1, 1] = 1
    out, result = blur(tmp_path, write_raster(tmp_path / "l.tif", labels), "out", radius=1)
    assert np.array_equal(out, expected)
    assert result.changed == 1
    assert np.array_equal(smooth(labels.T.copy(), Kernel("majority", 1, 1, 1)), expected.T)  # both axes alike


def test_ties_keep_the_own_label_else_the_lowest_id():
    kernel = Kernel("majority", 2, 1, 1)
    # middle pixel: 3 has 2 votes, 2 has 2, its own 1 has 1 -> the lowest of the tied ids, 2
    assert smooth(np.array([[3, 3, 1, 2, 2]], np.uint8), kernel).tolist() == [[3, 3, 2, 2, 2]]
    assert smooth(np.array([[2, 2, 1, 3, 3]], np.uint8), kernel).tolist() == [[2, 2, 2, 3, 3]]
    # end pixels tie 1:1 with their neighbour and keep their own label; inner ones are outvoted 2:1
    assert smooth(np.array([[2, 1]], np.uint8), Kernel("majority", 1, 1, 1)).tolist() == [[2, 1]]
    assert smooth(np.array([[2, 1, 2, 1]], np.uint8), Kernel("majority", 1, 1, 1)).tolist() == [[2, 2, 1, 1]]


def test_nodata_never_votes_and_stays_nodata():
    kernel = Kernel("majority", 1, 1, 1)
    # 5 alone among nodata keeps its label; nodata next to 5 stays 0
    assert smooth(np.array([[0, 0, 5, 0, 0]], np.uint8), kernel).tolist() == [[0, 0, 5, 0, 0]]
    labels = np.array([[0, 2, 0],
                       [2, 1, 0],
                       [0, 0, 0]], np.uint8)
    # the 1 sees two 2s and itself; the zeros would outvote everything if they voted
    assert smooth(labels, kernel).tolist() == [[0, 2, 0], [2, 2, 0], [0, 0, 0]]


@pytest.mark.parametrize("method", ["majority", "gaussian"])
@pytest.mark.parametrize("strength", ["low", "medium", "high"])
def test_votes_equal_their_definition_on_real_labels(kmeans_labels, method, strength):
    labels = read_array(kmeans_labels)[100:230, 200:361]
    kernel = choose_kernel(method, strength)
    expected = reference(labels, kernel)
    assert np.array_equal(smooth(labels, kernel), expected)
    assert np.array_equal(smooth(labels, kernel, chunk=23), expected)  # chunks that fit nothing
    voter = make_voter(kernel, labels.dtype, 29)  # reused, as across the windows of a raster
    assert np.array_equal(smooth(labels[::-1].copy(), kernel, voter=voter), expected[::-1])
    assert np.array_equal(smooth(labels, kernel, voter=voter), expected)
    assert 0.002 < np.mean(expected != labels) < 0.5


@pytest.mark.parametrize("radius", [7, 8, 9, 10, 11])
def test_near_even_votes_are_exact_around_the_8_bit_cap(radius):
    # Two or three segments in fine noise: many pixels see close to half the votes for each, the case where
    # the 8-bit counts (capped above half the box) must still pick the exact winner.
    rng = np.random.default_rng(radius)
    labels = (rng.random((70, 90)) < 0.5).astype(np.uint8) + 1
    labels[:, 60:] += (rng.random((70, 30)) < 0.3).astype(np.uint8)
    labels[30:40, 20:35] = 0
    kernel = Kernel("majority", radius, 1, 2)
    assert np.array_equal(smooth(labels, kernel, chunk=37), reference(labels, kernel))


def test_many_ids_in_uint16(tmp_path):
    rng = np.random.default_rng(5)
    blocks = rng.integers(1, 400, (12, 15)).astype(np.uint16)
    labels = np.kron(blocks, np.ones((6, 6), np.uint16))
    labels[rng.random(labels.shape) < 0.2] = 7
    labels[:5, :5] = 0
    kernel = Kernel("majority", 3, 1, 1)
    expected = reference(labels, kernel)
    assert np.array_equal(smooth(labels, kernel, chunk=20), expected)
    out, result = blur(tmp_path, write_raster(tmp_path / "many.tif", labels, nodata=0), "out", radius=3)
    assert np.array_equal(out, expected)
    dataset = gdal.Open(str(tmp_path / "out.tif"))  # kept: a band must not outlive its dataset (GDAL >= 3.8 refuses)
    assert dataset.GetRasterBand(1).DataType == gdal.GDT_UInt16 and result.segments == int(labels.max())


def test_windows_of_a_larger_raster_compose_exactly():
    # smooth() is the window-level API: any tiling with halo = reach gives the untiled result.
    rng = np.random.default_rng(2)
    labels = np.kron(rng.integers(1, 6, (13, 11)), np.ones((5, 7), np.uint8)).astype(np.uint8)[:61, :73]
    labels[rng.random(labels.shape) < 0.1] = 0
    for kernel in (Kernel("majority", 2, 2, 1), Kernel("gaussian", 3, 1, 2)):
        whole = smooth(labels, kernel)
        reach, (height, width) = kernel.reach, labels.shape
        tiled = np.zeros_like(labels)
        for y0, y1 in ((0, 17), (17, 40), (40, height)):
            for x0, x1 in ((0, 9), (9, 50), (50, width)):
                gy0, gy1 = max(0, y0 - reach), min(height, y1 + reach)
                gx0, gx1 = max(0, x0 - reach), min(width, x1 + reach)
                margins = (y0 - gy0, gy1 - y1, x0 - gx0, gx1 - x1)
                tiled[y0:y1, x0:x1] = smooth(labels[gy0:gy1, gx0:gx1], kernel, margins, chunk=11)
        assert np.array_equal(tiled, whole)


@pytest.mark.parametrize("options", [dict(strength="medium"), dict(strength="high"),
                                     dict(method="gaussian", strength="medium", iterations=2)])
def test_tiled_equals_untiled_and_reruns_are_byte_identical(tmp_path, kmeans_labels, options):
    whole, result = blur(tmp_path, kmeans_labels, "whole", memory_mb=256, **options)
    assert result.windows == 1
    for memory in (0.1, 0.3, 1.5):  # tiles (strips cannot fit the halo), thin strips, a few strips
        tiled, result = blur(tmp_path, kmeans_labels, f"tiled{memory}", memory_mb=memory, **options)
        assert result.windows > 1
        assert np.array_equal(tiled, whole)
    blur_labels(kmeans_labels, str(tmp_path / "again.tif"), **options)
    assert (tmp_path / "again.tif").read_bytes() == (tmp_path / "whole.tif").read_bytes()
    reference_labels = reference(read_array(kmeans_labels), choose_kernel(**{"method": "majority", **options}))
    assert np.array_equal(whole, reference_labels)


def test_nodata_holes_stay_nodata_through_tiles(tmp_path, kmeans_labels):
    labels = read_array(kmeans_labels)
    labels[50:120, 30:260] = 0
    labels[:, -9:] = 0
    labels[-1, :] = 0
    source = write_raster(tmp_path / "holes.tif", labels, nodata=0)
    whole, _ = blur(tmp_path, source, "whole", strength="high")
    assert np.array_equal(whole == 0, labels == 0)
    tiled, _ = blur(tmp_path, source, "tiled", strength="high", memory_mb=0.1)
    assert np.array_equal(tiled, whole)


def test_another_nodata_value_is_read_as_nodata(tmp_path):
    labels = np.full((20, 20), 3, np.uint8)
    labels[:, 10:] = 4
    labels[5:8, 2:18] = 255
    out, _ = blur(tmp_path, write_raster(tmp_path / "n255.tif", labels, nodata=255), "out", radius=2)
    assert np.array_equal(out == 0, labels == 255)
    assert set(np.unique(out)) == {0, 3, 4}


def test_output_keeps_grid_style_and_metadata_and_adds_the_blur(tmp_path, kmeans_labels):
    out = tmp_path / "smooth.tif"
    result = blur_labels(kmeans_labels, str(out), strength="high")
    src, dst = gdal.Open(kmeans_labels), gdal.Open(str(out))
    assert (dst.RasterXSize, dst.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert dst.GetGeoTransform() == src.GetGeoTransform() and dst.GetProjection() == src.GetProjection()
    band, source_band = dst.GetRasterBand(1), src.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    for index in range(9):
        assert band.GetRasterColorTable().GetColorEntry(index) == source_band.GetRasterColorTable().GetColorEntry(index)
    before, after = read_metadata(src), read_metadata(dst)
    for key in ("k", "names", "method", "seed", "centres", "features"):
        assert after[key] == before[key]
    assert after["blur"] == [dict(method="majority", radius=10, kernel_px=21, passes=2, iterations=1, reach=20,
                                  strength="high", stride=4)]
    assert np.allclose(read_reference(str(out))["centres"], before["centres"])  # what downstream steps read
    assert (tmp_path / "smooth.qml").read_text().count("<paletteEntry") == 8
    assert result.segments == 8 and result.kernel.reach == 20
    again = tmp_path / "twice.tif"
    blur_labels(str(out), str(again), method="gaussian", radius=3)
    history = read_metadata(gdal.Open(str(again)))["blur"]
    assert [entry["method"] for entry in history] == ["majority", "gaussian"] and history[1]["strength"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smooth.qml", "smooth.tif", "twice.qml", "twice.tif"]


def test_kernels_follow_the_block_size_of_the_labels(tmp_path, kampala_crop):
    labels8 = tmp_path / "block8.tif"
    segment_kmeans(kampala_crop, str(labels8), segments=5, block=8)
    _, result = blur(tmp_path, labels8, "b8", strength="medium")
    assert (result.kernel.radius, result.kernel.passes) == (11, 1)  # 11 px at 4 px blocks -> 23 px at 8 px
    assert choose_kernel(strength="high", stride=16) == Kernel("majority", 42, 2, 1)  # the predecessor's 85 px
    assert choose_kernel(strength="low") == Kernel("majority", 2, 1, 1)
    assert choose_kernel(strength="low", radius=6, iterations=3) == Kernel("majority", 6, 1, 3)
    plain = write_raster(tmp_path / "plain.tif", read_array(labels8))  # no metadata: 4 px blocks assumed
    messages = []
    result = blur_labels(plain, str(tmp_path / "p.tif"), progress=Progress(log=messages.append))
    assert result.kernel.radius == 5 and any("assume 4 px" in message for message in messages)


def test_gaussian_has_the_spread_of_the_box_and_differs_from_majority(tmp_path, kmeans_labels):
    assert [choose_kernel("gaussian", s).box_radius for s in ("low", "medium", "high")] == [1, 3, 6]
    majority, _ = blur(tmp_path, kmeans_labels, "m", strength="medium")
    gaussian, _ = blur(tmp_path, kmeans_labels, "g", method="gaussian", strength="medium")
    assert not np.array_equal(majority, gaussian)
    assert np.mean(majority == gaussian) > 0.9


def test_integer_types_other_than_byte_and_uint16(tmp_path):
    labels = np.full((30, 30), 2, np.int16)
    labels[10:20, 10:20] = 9
    labels[15, 15] = 2
    source = write_raster(tmp_path / "i16.tif", labels)
    out, result = blur(tmp_path, source, "out", radius=1)
    assert out[15, 15] == 9 and result.segments == 9
    assert gdal.Open(str(tmp_path / "out.tif")).GetRasterBand(1).DataType == gdal.GDT_Byte
    labels[0, 0] = -4
    with pytest.raises(InputError, match="segment ids must be 0..65535"):
        blur_labels(write_raster(tmp_path / "neg.tif", labels), str(tmp_path / "never.tif"))


def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path, kmeans_labels, kampala_crop):
    floats = write_raster(tmp_path / "float.tif", np.ones((20, 20), np.float32))
    out = tmp_path / "never.tif"
    with pytest.raises(InputError, match="holds Float32 values, not integer segment ids"):
        blur_labels(floats, str(out))
    with pytest.raises(InputError, match="has 3 bands; a label raster has one band"):
        blur_labels(kampala_crop, str(out))
    with pytest.raises(InputError, match="RADIUS must be 0 .* got -1"):
        blur_labels(kmeans_labels, str(out), radius=-1)
    with pytest.raises(InputError, match="RADIUS must be at most 200 px"):
        blur_labels(kmeans_labels, str(out), radius=100000)
    with pytest.raises(InputError, match="RADIUS must be at most 100 px with METHOD gaussian"):
        blur_labels(kmeans_labels, str(out), method="gaussian", radius=101)
    with pytest.raises(InputError, match="METHOD must be one of majority, gaussian"):
        blur_labels(kmeans_labels, str(out), method="median")
    with pytest.raises(InputError, match="STRENGTH must be one of low, medium, high"):
        blur_labels(kmeans_labels, str(out), strength="extreme")
    with pytest.raises(InputError, match="ITERATIONS must be at least 1"):
        blur_labels(kmeans_labels, str(out), iterations=0)
    with pytest.raises(InputError, match="does not exist"):
        blur_labels(str(tmp_path / "missing.tif"), str(out))
    empty = write_raster(tmp_path / "empty.tif", np.zeros((20, 20), np.uint8), nodata=0)
    with pytest.raises(InputError, match="has no segment ids: every pixel is nodata"):
        blur_labels(empty, str(out))
    with pytest.raises(OutputError, match="is also an input"):
        blur_labels(kmeans_labels, kmeans_labels)
    with pytest.raises(OutputError, match="does not exist"):
        blur_labels(kmeans_labels, str(tmp_path / "no" / "x.tif"))
    assert sorted(os.listdir(tmp_path)) == ["empty.tif", "float.tif"]


def test_progress_moves_to_one_and_cancel_leaves_nothing(tmp_path, kmeans_labels):
    reports = []
    blur_labels(kmeans_labels, str(tmp_path / "p.tif"), strength="high", memory_mb=0.3,
                progress=Progress(report=lambda fraction, message: reports.append(fraction)))
    assert reports == sorted(reports) and reports[-1] == pytest.approx(1.0) and len(set(reports)) > 10
    existing = tmp_path / "existing.tif"
    existing.write_bytes(b"precious")
    for stop_after in (1, 6):
        calls = []

        def cancelled(calls=calls, stop_after=stop_after):
            calls.append(1)
            return len(calls) > stop_after

        with pytest.raises(Cancelled):
            blur_labels(kmeans_labels, str(existing), memory_mb=0.3, progress=Progress(is_cancelled=cancelled))
    assert existing.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["existing.tif", "p.qml", "p.tif"]
