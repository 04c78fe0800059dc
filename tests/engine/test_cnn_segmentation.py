"""segment_cnn end to end with the shipped model in the real ONNX Runtime, on real GeoTIFFs: tile- and
batch-size invariance (no seams), one inference pass, edges, masks, data types, reference, cancel."""

import os
import time

import numpy as np
import pytest
from onnx_builders import SHIPPED, shipped_copy, tiny_model
from osgeo import gdal

from map_segmenter.engine.backends import onnx_runtime
from map_segmenter.engine.rasters.labels import read_metadata
from map_segmenter.engine.runtime.errors import Cancelled, InputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.cnn_segmentation import plan_tiles, reflect_index, segment_cnn
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import KAMPALA, NAIP, crop_real, read_array, two_surfaces, write_raster

MODEL = str(SHIPPED)


def run(tmp_path, source, name, model=MODEL, **options):
    out, features = tmp_path / f"{name}.tif", tmp_path / f"{name}_features.tif"
    result = segment_cnn(str(source), str(out), model, features_path=str(features), **options)
    return read_array(out), read_array(features), result


@pytest.fixture(scope="module")
def small_crop(tmp_path_factory):
    """A real 203 x 157 px crop (multiples of neither the stride nor any tile)."""
    return crop_real(KAMPALA, tmp_path_factory.mktemp("small") / "small.tif", 203, 157, 1500, 1100)


@pytest.fixture(scope="module")
def untiled(small_crop, tmp_path_factory):
    """The small crop in a single tile (the whole raster plus its halo): the reference for tiling."""
    labels, features, result = run(tmp_path_factory.mktemp("untiled"), small_crop, "untiled")
    assert result.tiles == 1 and result.tile_shape == (216, 260)  # 204 x 160 px + 28 px halo
    return labels, features


def assert_same(first, second):
    (labels, features), (base_labels, base_features) = first, second
    assert features.shape == base_features.shape
    assert np.array_equal(np.isnan(features), np.isnan(base_features))
    assert np.nanmax(np.abs(features - base_features)) <= 1e-4
    assert (labels == base_labels).mean() >= 0.9999
    assert labels.min() == 1  # no strip of nodata at the bottom or right edge (sizes: not multiples of 4)


@pytest.mark.parametrize("tile_size, batch_size, tiles", [(128, 1, 9), (100, 7, 20), (80, 3, 63)])
def test_tile_and_batch_size_do_not_change_the_result(tmp_path, small_crop, untiled, tile_size, batch_size, tiles):
    labels, features, result = run(tmp_path, small_crop, "tiled", tile_size=tile_size, batch_size=batch_size)
    assert result.tiles == tiles and result.batches == -(-tiles // batch_size)
    assert features.shape == (32, 40, 51)
    assert_same((labels, features), untiled)


def test_default_tiles_on_a_larger_raster(tmp_path, kampala_crop):
    default = run(tmp_path, kampala_crop, "default")
    assert default[2].tiles == 1  # TILE_SIZE 0: network_tile (NETWORK_TILE px) holds all 517 x 389 px
    model_tiles = run(tmp_path, kampala_crop, "model", tile_size=512, batch_size=1)
    assert model_tiles[2].tiles == 2  # the model's 512 px: 456 x 392 px cores
    assert_same(default[:2], model_tiles[:2])
    assert np.array_equal(default[1], model_tiles[1], equal_nan=True)  # here bit for bit


def test_network_tile_is_bounded_by_memory_and_the_model():
    from map_segmenter.engine.segmentation.cnn_segmentation import NETWORK_TILE, TILE_BYTES_PER_PIXEL, network_tile

    class Info:
        stride, tile_size, global_context = 4, 512, False

    assert network_tile(Info, 1 << 40, 2) == NETWORK_TILE
    side = 900  # as MEMORY_MB allows two tiles of 900 px at a time (rounded down to the stride)
    assert network_tile(Info, TILE_BYTES_PER_PIXEL * side * side * 2, 2) == 900
    assert network_tile(Info, 1 << 20, 2) == 512  # never below the model's tile_size
    Info.global_context = True  # blended tiles: the result depends on the tile, so it is the model's
    assert network_tile(Info, 1 << 40, 2) == 512


def test_without_the_halo_tiles_would_show_seams(tmp_path, small_crop, untiled):
    """The invariance test can fail: a copy of the model that claims a receptive field of 0 px gets no halo."""
    blind = shipped_copy(tmp_path / "blind.onnx", receptive_field=0)
    _, features, result = run(tmp_path, small_crop, "blind", model=blind, tile_size=100)
    assert result.tiles == 6  # no halo: 3 x 2 cores of at most 100 px over 204 x 160 px, balanced: 68 x 80 px
    difference = np.abs(features - untiled[1])
    # cells more than 27 px (7 cells) from every tile border still match; cells at the borders do not
    rows, cols = np.arange(40) % 20, np.arange(51) % 17
    far = ((rows >= 7) & (rows < 13))[:, None] & ((cols >= 7) & (cols < 10))[None, :]
    assert np.nanmax(difference[:, far]) <= 1e-4
    assert np.nanmax(difference[:, :, [16, 17]]) > 0.1


def test_each_tile_is_inferred_once(tmp_path, small_crop, monkeypatch):
    shapes = []
    real_run = onnx_runtime.LoadedModel.run

    def counting_run(self, batch, cancel_check=None):  # a spy: counts and calls the real network
        shapes.append(batch.shape)
        return real_run(self, batch, cancel_check)

    monkeypatch.setattr(onnx_runtime.LoadedModel, "run", counting_run)
    result = segment_cnn(small_crop, str(tmp_path / "l.tif"), MODEL, tile_size=120, batch_size=3)
    # cores of at most 64 px over 204 x 160 px: 4 x 3 tiles, balanced to 52 x 56 px cores (108 x 112 px tiles),
    # in batches of 3
    assert shapes == [(3, 3, 112, 108)] * 4 and result.tiles == 12


def test_plan_and_reflection():
    layout = plan_tiles(517, 389, 4, 28, 512)
    # cores of at most 456 px; 520 px wide (padded to the stride) takes 2, balanced to 260 px each
    assert (layout.core_width, layout.core_height, layout.width, layout.height) == (260, 392, 316, 448)
    assert layout.origins == ((0, 0), (260, 0))
    assert (plan_tiles(5000, 5000, 4, 20, 512).core_width, len(plan_tiles(5000, 5000, 4, 20, 512).origins)) == \
        (456, 121)
    small = plan_tiles(10, 6, 4, 28, 512)
    assert (small.core_width, small.core_height, small.origins) == (12, 8, ((0, 0),))
    assert list(reflect_index(np.arange(-4, 9), 4)) == [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert list(reflect_index(np.arange(-2, 3), 1)) == [0] * 5
    with pytest.raises(InputError, match="TILE_SIZE 59 px leaves no room for the model's halo of 28 px on each "
                                         "side. Choose a TILE_SIZE of at least 60 px"):
        plan_tiles(517, 389, 4, 28, 59)


def test_label_and_feature_raster_contract_and_byte_identical_reruns(tmp_path, small_crop):
    labels, features, result = run(tmp_path, small_crop, "a", segments=6, seed=3)
    segment_cnn(small_crop, str(tmp_path / "b.tif"), MODEL, segments=6, seed=3, tile_size=100, batch_size=2)
    segment_cnn(small_crop, str(tmp_path / "c.tif"), MODEL, segments=6, seed=3, tile_size=100, batch_size=2)
    assert (tmp_path / "b.tif").read_bytes() == (tmp_path / "c.tif").read_bytes()
    src, dst = gdal.Open(small_crop), gdal.Open(str(tmp_path / "a.tif"))
    assert (dst.RasterXSize, dst.RasterYSize) == (203, 157)
    assert dst.GetGeoTransform() == src.GetGeoTransform() and dst.GetProjection() == src.GetProjection()
    band = dst.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    meta = read_metadata(dst)
    assert meta["method"] == "cnn" and meta["k"] == 6 and meta["seed"] == 3
    assert meta["provider"] == "CPUExecutionProvider" == result.provider
    assert np.array_equal(np.array(meta["centres"]), result.centres) and result.centres.shape == (6, 32)
    model = meta["features"]["model"]
    assert model["name"] == "student_s4_untrained" and model["training"]["status"] == "untrained"
    assert len(model["sha256"]) == 64
    assert sorted(np.unique(labels)) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "a.qml").read_text().count("<paletteEntry") == 6
    # ids run dark to light: mean brightness of the cells nearest to each centre (the sample is every cell here)
    grey = np.pad(read_array(small_crop).astype(float).mean(axis=0), ((0, 3), (0, 1)))
    counts = np.pad(np.ones((157, 203)), ((0, 3), (0, 1))).reshape(40, 4, 51, 4).sum(axis=(1, 3))
    cell_grey = grey.reshape(40, 4, 51, 4).sum(axis=(1, 3)) / counts
    nearest = (((features[None] - result.centres[:, :, None, None]) ** 2).sum(axis=1)).argmin(axis=0)
    brightness = [cell_grey[nearest == k].mean() for k in range(6)]
    assert brightness == sorted(brightness)
    assert 0.7 < (labels == np.repeat(np.repeat(nearest + 1, 4, axis=0), 4, axis=1)[:157, :203]).mean() < 0.99
    # features: 32 Float32 bands on the stride grid, NaN nodata, geotransform scaled by 4
    fds = gdal.Open(str(tmp_path / "a_features.tif"))
    assert (fds.RasterXSize, fds.RasterYSize, fds.RasterCount) == (51, 40, 32)
    assert fds.GetRasterBand(1).DataType == gdal.GDT_Float32 and np.isnan(fds.GetRasterBand(1).GetNoDataValue())
    gt = src.GetGeoTransform()
    assert fds.GetGeoTransform() == (gt[0], gt[1] * 4, 0.0, gt[3], 0.0, gt[5] * 4)
    fmeta = read_metadata(fds)
    assert fmeta["kind"] == "cnn" and fmeta["stride"] == 4 and fmeta["names"][0] == "embedding_1"
    assert fmeta["model"]["sha256"] == model["sha256"] and fmeta["halo"] == 28
    assert not np.isnan(features).any()


def test_nodata_stays_nodata_and_tiling_still_agrees(tmp_path, small_crop):
    pixels = read_array(small_crop)
    pixels[:, 50:91, 30:133] = 0  # a nodata hole with unaligned edges
    pixels[:, :, -7:] = 0
    source = write_raster(tmp_path / "holes.tif", pixels, nodata=0)
    labels, features, result = run(tmp_path, source, "holes_out", segments=5)
    hole = (pixels == 0).any(axis=0)
    assert np.array_equal(labels == 0, hole)
    # a cell is nodata exactly when none of its own pixels is valid
    padded = np.pad(~hole, ((0, 3), (0, 1)))
    cell_valid = padded.reshape(40, 4, 51, 4).any(axis=(1, 3))
    assert np.array_equal(~np.isnan(features[0]), cell_valid)
    assert result.valid_cells == cell_valid.sum()
    tiled, tiled_features, _ = run(tmp_path, source, "holes_tiled", segments=5, tile_size=100, batch_size=5)
    assert (tiled == labels).mean() >= 0.9999
    assert np.nanmax(np.abs(tiled_features - features)) <= 1e-4


def test_alpha_band_is_a_mask(tmp_path, small_crop):
    rgb = read_array(small_crop)
    alpha = np.full(rgb.shape[1:], 255, np.uint8)
    alpha[90:, 120:] = 0
    source = write_raster(tmp_path / "rgba.tif", np.concatenate([rgb, alpha[None]]), alpha_band=4)
    labels, _, _ = run(tmp_path, source, "rgba_out", segments=4)
    assert np.array_equal(labels == 0, alpha == 0)


def test_sixteen_bit_and_float_inputs_are_scaled_like_eight_bit(tmp_path, small_crop):
    pixels = read_array(small_crop)
    pixels[:, :4] = 0  # >= 1 % of pixels at 0 and at 255: the 1st-99th percentile range is exactly 0..255
    pixels[:, 4:8] = 255
    byte = write_raster(tmp_path / "byte.tif", pixels)
    wide = write_raster(tmp_path / "wide.tif", pixels.astype(np.uint16) * 37 + 1000)
    floats = pixels.astype(np.float32) / 255.0
    floats[:, 150:, :] = np.nan
    real = write_raster(tmp_path / "float.tif", floats)
    labels8, features8, _ = run(tmp_path, byte, "byte_out", segments=4)
    labels16, features16, _ = run(tmp_path, wide, "wide_out", segments=4)
    assert np.nanmax(np.abs(features16 - features8)) <= 1e-4
    assert (labels16 == labels8).mean() >= 0.9999
    ranges = read_metadata(gdal.Open(str(tmp_path / "wide_out_features.tif")))["input_ranges"]
    assert ranges[0] == pytest.approx([1000, 255 * 37 + 1000])
    labels_f, _, _ = run(tmp_path, real, "float_out", segments=4)
    assert (labels_f[150:] == 0).all() and (labels_f[:150] > 0).all()


def test_bands_choice_and_grey_scale(tmp_path):
    naip = crop_real(NAIP, tmp_path / "naip.tif", 160, 120, 300, 300)
    default, _, _ = run(tmp_path, naip, "rgb", segments=4)
    nir, _, _ = run(tmp_path, naip, "nir", segments=4, bands=[4, 1, 2])
    assert not np.array_equal(default, nir)
    grey = write_raster(tmp_path / "grey.tif", read_array(naip)[0])
    labels, features, _ = run(tmp_path, grey, "grey_out", segments=3, bands=[1, 1, 1])
    assert set(np.unique(labels)) == {1, 2, 3}
    # the red band fed three times equals the grey raster (as a default and as BANDS=1)
    same, same_features, _ = run(tmp_path, naip, "red_x3", segments=3, bands=[1, 1, 1])
    assert np.array_equal(labels, same) and np.array_equal(features, same_features)
    for name, bands in (("grey_default", None), ("grey_one", [1])):
        other, other_features, _ = run(tmp_path, grey, name, segments=3, bands=bands)
        assert np.array_equal(other, labels) and np.array_equal(other_features, features)
    with pytest.raises(InputError, match="The model takes 3 bands .*; BANDS gives 2. Choose 3 bands, or one band"):
        segment_cnn(naip, str(tmp_path / "x.tif"), MODEL, bands=[1, 2])


def test_bad_inputs_write_nothing(tmp_path, small_crop):
    out = tmp_path / "never.tif"
    tiny = write_raster(tmp_path / "tiny.tif", np.random.default_rng(0).integers(0, 255, (3, 8, 8), np.uint8))
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 40, 40), np.uint8), nodata=0)
    other = tiny_model(tmp_path / "classifier.onnx", metadata={"model_type": "classification"})
    cases = [
        (dict(model_path=str(tmp_path / "missing.onnx")), "missing.onnx' does not exist"),
        (dict(model_path=other), "is a 'classification' model, not an embedding model"),
        (dict(input_path=tiny, segments=5), "Only 4 valid cells (4 x 4 px each) for 5 segments"),
        (dict(input_path=empty), "has no valid pixels"),
        (dict(segments=255), "SEGMENTS must be 0 (automatic) or between 2 and 254"),
        (dict(tile_size=40), "TILE_SIZE 40 px leaves no room"),
        (dict(batch_size=0), "BATCH_SIZE must be at least 1"),
        (dict(device="gpu"), "DEVICE must be one of auto, cuda, coreml, cpu"),
    ]
    for changes, expected in cases:
        arguments = {**dict(input_path=small_crop, output_path=str(out), model_path=MODEL), **changes}
        with pytest.raises(InputError) as error:
            segment_cnn(**arguments)
        assert expected in str(error.value)
        assert sorted(os.listdir(tmp_path)) == ["classifier.onnx", "empty.tif", "tiny.tif"]


def test_reference_gives_the_same_ids_on_overlapping_crops(tmp_path):
    first = crop_real(KAMPALA, tmp_path / "first.tif", 280, 220, 1000, 600)
    second = crop_real(KAMPALA, tmp_path / "second.tif", 280, 220, 1080, 660)  # offsets: multiples of 4
    segment_cnn(first, str(tmp_path / "first_labels.tif"), MODEL, segments=6)
    segment_cnn(second, str(tmp_path / "second_labels.tif"), MODEL, reference_path=str(tmp_path / "first_labels.tif"))
    a = read_array(tmp_path / "first_labels.tif")[60:220, 80:280]
    b = read_array(tmp_path / "second_labels.tif")[0:160, 0:200]
    ring = 28  # embeddings within the receptive field of a crop's border see that crop's mirror image
    inner = (slice(ring, -ring), slice(ring, -ring))
    assert (a[inner] == b[inner]).mean() >= 0.9999
    first_meta = read_metadata(gdal.Open(str(tmp_path / "first_labels.tif")))
    second_meta = read_metadata(gdal.Open(str(tmp_path / "second_labels.tif")))
    assert second_meta["centres"] == first_meta["centres"] and second_meta["k"] == 6
    assert second_meta["reference"] == "first_labels.tif"
    segment_cnn(second, str(tmp_path / "free.tif"), MODEL, segments=6, seed=5)
    assert not np.array_equal(read_array(tmp_path / "free.tif")[0:160, 0:200][inner], b[inner])
    # references from another method or another model are refused
    segment_kmeans(first, str(tmp_path / "kmeans.tif"), segments=6)
    with pytest.raises(InputError, match="was made by kmeans, not segmenter:cnn"):
        segment_cnn(second, str(tmp_path / "x.tif"), MODEL, reference_path=str(tmp_path / "kmeans.tif"))
    other = shipped_copy(tmp_path / "other.onnx", version="other")
    with pytest.raises(InputError, match="was made with model student_s4_untrained .*Use the same MODEL"):
        segment_cnn(second, str(tmp_path / "x.tif"), other, reference_path=str(tmp_path / "first_labels.tif"))


def test_progress_moves_through_every_stage_and_logs_the_provider(tmp_path, small_crop):
    reports, logs = [], []
    segment_cnn(small_crop, str(tmp_path / "p.tif"), MODEL, tile_size=120, batch_size=2, device="cuda",
                progress=Progress(report=lambda f, m: reports.append((f, m)), log=logs.append))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    messages = " ".join(m for _, m in reports)
    for stage in ("Loading the model", "Computing embeddings (2/12 tiles)", "Fitting centres", "Assigning segments"):
        assert stage in messages
    assert "Computing embeddings (6/12 tiles)" in messages
    assert logs[0].startswith("Warning: DEVICE=cuda: CUDAExecutionProvider is not available")
    assert "running student_s4_untrained on CPUExecutionProvider" in logs[1]
    assert "halo 28 px" in logs[2]


@pytest.mark.parametrize("stop_after", [1, 3, 12])
def test_cancel_leaves_nothing_at_the_destination(tmp_path, small_crop, stop_after):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > stop_after

    with pytest.raises(Cancelled):
        segment_cnn(small_crop, str(tmp_path / "c.tif"), MODEL, features_path=str(tmp_path / "f.tif"),
                    tile_size=100, batch_size=2, progress=Progress(is_cancelled=cancelled))
    assert os.listdir(tmp_path) == []


def test_cancel_interrupts_a_running_batch():
    model = onnx_runtime.load_model(MODEL, "cpu", threads=1)
    batch = np.random.default_rng(0).normal(size=(2, 3, 768, 768)).astype(np.float32)
    start = time.perf_counter()
    model.run(batch)
    full = time.perf_counter() - start
    start = time.perf_counter()

    def check():
        if time.perf_counter() - start > 0.05:
            raise Cancelled()

    with pytest.raises(Cancelled):
        model.run(batch, cancel_check=check)
    stopped = time.perf_counter() - start
    assert stopped < 0.6 * full, (stopped, full)


def test_bilinear_upsampling_equals_an_independent_reference_in_any_window_layout(tmp_path, small_crop):
    from scipy.ndimage import map_coordinates

    labels, features, result = run(tmp_path, small_crop, "bilinear", segments=5)
    distances = ((features[None].astype(np.float64) - result.centres[:, :, None, None]) ** 2).sum(axis=1)
    rows, cols = np.mgrid[0:157, 0:203]
    interpolated = [map_coordinates(d, [(rows - 1.5) / 4, (cols - 1.5) / 4], order=1, mode="nearest")
                    for d in distances]
    assert (labels == np.argmin(interpolated, axis=0) + 1).mean() >= 0.9999
    windows, _, _ = run(tmp_path, small_crop, "windows", segments=5, memory_mb=0.02)  # many small windows
    assert np.array_equal(windows, labels)
    nearest, _, _ = run(tmp_path, small_crop, "nearest", segments=5, upsample="nearest")
    cells = np.argmin(distances, axis=0) + 1
    assert np.array_equal(nearest, np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1)[:157, :203])
    assert 0.7 < (nearest == labels).mean() < 0.99
    assert read_metadata(gdal.Open(str(tmp_path / "bilinear.tif")))["upsample"] == "bilinear"


def test_reference_reuses_the_value_ranges_of_sixteen_bit_input(tmp_path):
    first = two_surfaces(tmp_path / "a.tif", 1000, 5000, 0, width=160)
    second = two_surfaces(tmp_path / "b.tif", 5000, 9000, 1, width=160)
    segment_cnn(first, str(tmp_path / "a_ids.tif"), MODEL, segments=2)
    segment_cnn(second, str(tmp_path / "b_ids.tif"), MODEL, segments=2, reference_path=str(tmp_path / "a_ids.tif"))
    a, b = read_array(tmp_path / "a_ids.tif"), read_array(tmp_path / "b_ids.tif")
    # away from the halves' border (the embeddings see 27 px around each cell)
    assert len(np.unique(a[:, 112:])) == 1 and np.array_equal(np.unique(b[:, :48]), np.unique(a[:, 112:]))
    meta_a, meta_b = (read_metadata(gdal.Open(str(tmp_path / n))) for n in ("a_ids.tif", "b_ids.tif"))
    assert meta_b["features"]["input_ranges"] == meta_a["features"]["input_ranges"]


def test_mirrored_edges_by_runs_of_slices_equal_np_take():
    from map_segmenter.engine.segmentation.cnn_segmentation import _take_runs, reflect_index

    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 7, 50):
        array = rng.integers(0, 255, (3, size, size + 1)).astype(np.uint8)
        for low, high in [(-20, 30), (-3, 5), (0, size), (-100, 100), (size - 5, size + 40)]:
            rows = reflect_index(np.arange(low, high), size)
            assert np.array_equal(_take_runs(array, rows, 1), np.take(array, rows, axis=1))
            cols = reflect_index(np.arange(low, high), size + 1)
            assert np.array_equal(_take_runs(array[0] > 100, cols, 1), np.take(array[0] > 100, cols, axis=1))
    row = np.arange(60)[None, :]
    for _ in range(300):  # any index: runs of +1 and -1 steps, repeats and jumps (runs of one)
        index = np.clip(rng.choice([-1, 1, 1, 0, 3], rng.integers(1, 15)).cumsum() + 20, 0, 59)
        assert np.array_equal(_take_runs(row, index, 1), np.take(row, index, axis=1))


def test_direct_reads_give_the_same_pixels_without_filling_the_block_cache(tmp_path):
    """The CNN opens an uncompressed GeoTIFF with GTIFF_DIRECT_IO (raster_io.open_input(direct=True)): the same
    pixels, read straight from the file; the option is set for the opening only."""
    from map_segmenter.engine.rasters.raster_io import open_input

    pixels = np.random.default_rng(4).integers(0, 256, (3, 300, 400)).astype(np.uint8)
    path = write_raster(tmp_path / "plain.tif", pixels, options=("TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"))
    cached, direct = open_input(path), open_input(path, direct=True)
    assert gdal.GetThreadLocalConfigOption("GTIFF_DIRECT_IO") is None
    before = gdal.GetCacheUsed()
    assert np.array_equal(direct.read(13, 7, 333, 250), pixels[:, 7:257, 13:346])
    assert gdal.GetCacheUsed() == before
    assert np.array_equal(cached.read(13, 7, 333, 250), pixels[:, 7:257, 13:346])
    assert gdal.GetCacheUsed() > before
    cached.release_cache()
