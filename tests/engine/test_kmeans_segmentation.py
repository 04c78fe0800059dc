"""segment_kmeans end to end on real GeoTIFFs: exact tiling, edges, masks, data types, determinism."""

import os

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.labels import read_metadata
from map_segmenter.engine.runtime.errors import Cancelled, InputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import DUBAI_IMAGES, KAMPALA, NAIP, SWISS, crop_real, read_array, two_surfaces, write_raster


def stripes(width, height, period, vertical=True):
    """Two-colour stripes ``period`` px wide, dark and light, close enough that edge texture stays secondary."""
    coordinate = np.arange(width if vertical else height) // period % 2
    index = np.broadcast_to(coordinate[None, :] if vertical else coordinate[:, None], (height, width))
    colours = np.array([[90, 100, 80], [130, 125, 115]], np.uint8)
    return np.moveaxis(colours[index], -1, 0).copy(), index


def checkerboard(width, height, cell):
    index = ((np.arange(height)[:, None] // cell) + (np.arange(width)[None, :] // cell)) % 2
    colours = np.array([[70, 100, 130], [120, 110, 90]], np.uint8)
    return np.moveaxis(colours[index], -1, 0).copy(), index


def run(tmp_path, source, name, **options):
    out = tmp_path / f"{name}.tif"
    features = tmp_path / f"{name}_features.tif"
    segment_kmeans(str(source), str(out), features_path=str(features), **options)
    return read_array(out), read_array(features)


# Stripes and cells 4 blocks wide: any shift of a window by a pixel or a block moves ids.
@pytest.mark.parametrize("pattern", ["stripes", "hstripes", "checker"])
@pytest.mark.parametrize("block", [4, 5])
def test_tiled_equals_untiled_on_patterns(tmp_path, pattern, block):
    width, height = 203, 157  # multiples of neither the block nor any window size
    period = 4 * block
    if pattern == "checker":
        pixels, truth = checkerboard(width, height, period)
    else:
        pixels, truth = stripes(width, height, period, vertical=pattern == "stripes")
    source = write_raster(tmp_path / "in.tif", pixels)
    # Colour only: with texture, blocks on stripe edges are a kind of region of their own (rightly so).
    options = dict(segments=2, block=block, texture_weight=0.0)
    whole, whole_features = run(tmp_path, source, "whole", memory_mb=64, **options)
    for memory in (0.012, 0.05, 0.2):  # 20 px tiles, strips of a few blocks, larger strips
        tiled, tiled_features = run(tmp_path, source, f"tiled{memory}", memory_mb=memory, **options)
        assert np.array_equal(tiled, whole)
        assert np.array_equal(tiled_features, whole_features, equal_nan=True)
    # No edge strips of 0, and the labels follow the pattern exactly away from the raster's border blocks,
    # whose descriptors see a one-sided context (a partial last block can side with its neighbour).
    assert whole.min() == 1
    inner = (slice(block, -2 * block), slice(block, -2 * block))
    assert np.array_equal(whole[inner], truth[inner] + 1)


def test_tiled_equals_untiled_on_real_imagery_and_reruns_are_byte_identical(tmp_path, kampala_crop):
    base, base_features = run(tmp_path, kampala_crop, "base", segments=8, block=4, memory_mb=256)
    for memory in (0.03, 0.3, 1):
        labels, features = run(tmp_path, kampala_crop, f"m{memory}", segments=8, block=4, memory_mb=memory)
        assert np.array_equal(labels, base)
        assert np.array_equal(features, base_features, equal_nan=True)
    segment_kmeans(kampala_crop, str(tmp_path / "again.tif"), segments=8, block=4)
    segment_kmeans(kampala_crop, str(tmp_path / "again2.tif"), segments=8, block=4)
    assert (tmp_path / "again.tif").read_bytes() == (tmp_path / "again2.tif").read_bytes()
    assert len(np.unique(base)) == 8


@pytest.mark.parametrize("chunk_pixels", [1, 128 * 4 * 4, 5000])
def test_descriptors_in_column_chunks_equal_one_piece(tmp_path, kampala_crop, monkeypatch, chunk_pixels):
    """A window's descriptors are computed in column chunks (with the ring's columns on each side) to keep a
    window's working memory small: any chunk width gives the same features and labels as the whole window."""
    from map_segmenter.engine.segmentation import kmeans_segmentation

    monkeypatch.setattr(kmeans_segmentation, "CHUNK_PIXELS", 2**40)
    whole, whole_features = run(tmp_path, kampala_crop, "whole", segments=6, block=4, memory_mb=256)
    monkeypatch.setattr(kmeans_segmentation, "CHUNK_PIXELS", chunk_pixels)
    chunked, chunked_features = run(tmp_path, kampala_crop, "chunked", segments=6, block=4, memory_mb=256)
    assert np.array_equal(chunked_features, whole_features, equal_nan=True)
    assert np.array_equal(chunked, whole)


def test_windows_really_are_many_for_small_budgets(kampala_crop, tmp_path):
    result = segment_kmeans(kampala_crop, str(tmp_path / "a.tif"), memory_mb=0.05)
    assert result.windows > 20


def test_label_raster_contract(tmp_path):
    source = crop_real(SWISS, tmp_path / "swiss.tif", 875, 600)
    out = tmp_path / "labels.tif"
    result = segment_kmeans(source, str(out), segments=6, block=4, seed=3)
    src, dst = gdal.Open(source), gdal.Open(str(out))
    assert (dst.RasterXSize, dst.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert dst.GetGeoTransform() == src.GetGeoTransform()
    assert dst.GetProjection() == src.GetProjection() and "CH1903+" in dst.GetProjection()
    band = dst.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    assert band.GetRasterColorTable().GetCount() >= 7
    meta = read_metadata(dst)
    assert meta["names"] == [f"Segment {i}" for i in range(1, 7)]
    assert meta["k"] == 6 and meta["seed"] == 3 and meta["method"] == "kmeans"
    assert np.allclose(meta["centres"], result.centres)
    # ids run dark to light: centre lightness strictly increases
    assert list(np.argsort(result.centres[:, 0])) == list(range(6))
    assert (tmp_path / "labels.qml").read_text().count("<paletteEntry") == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.qml", "labels.tif", "swiss.tif"]


def test_feature_raster_is_on_the_block_grid(tmp_path):
    source = crop_real(SWISS, tmp_path / "swiss.tif", 401, 299)
    segment_kmeans(source, str(tmp_path / "l.tif"), block=8, features_path=str(tmp_path / "f.tif"))
    src, features = gdal.Open(source), gdal.Open(str(tmp_path / "f.tif"))
    assert (features.RasterXSize, features.RasterYSize, features.RasterCount) == (51, 38, 6)
    gt, fgt = src.GetGeoTransform(), features.GetGeoTransform()
    assert fgt == (gt[0], gt[1] * 8, 0.0, gt[3], 0.0, gt[5] * 8)
    assert read_metadata(features)["stride"] == 8


def test_non_georeferenced_jpeg_keeps_pixel_grid(tmp_path):
    jpeg = str(sorted(DUBAI_IMAGES.glob("*.jpg"))[0])
    out = tmp_path / "dubai.tif"
    segment_kmeans(jpeg, str(out), segments=5)
    src, dst = gdal.Open(jpeg), gdal.Open(str(out))
    assert (dst.RasterXSize, dst.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert dst.GetGeoTransform(can_return_null=True) is None
    assert dst.GetSpatialRef() is None
    assert set(np.unique(read_array(out))) == {1, 2, 3, 4, 5}


def test_nodata_pixels_stay_nodata_and_are_left_out_of_the_fit(tmp_path, kampala_crop):
    pixels = read_array(kampala_crop)
    pixels[:, 100:180, 50:300] = 0  # a nodata hole with an unaligned edge
    pixels[:, :, -7:] = 0
    source = write_raster(tmp_path / "holes.tif", pixels, nodata=0)
    labels, features = run(tmp_path, source, "holes_out", segments=4)
    hole = (pixels == 0).any(axis=0)  # a band at its nodata value makes the pixel nodata
    assert np.array_equal(labels == 0, hole)
    # the black hole is not a segment: every centre is far from black (L > 5)
    assert min(read_metadata(gdal.Open(str(tmp_path / "holes_out.tif")))["centres"])[0] > 5
    tiled, _ = run(tmp_path, source, "holes_tiled", segments=4, memory_mb=0.03)
    assert np.array_equal(tiled, labels)


def test_alpha_band_is_a_mask_not_a_colour(tmp_path, kampala_crop):
    rgb = read_array(kampala_crop)
    alpha = np.full(rgb.shape[1:], 255, np.uint8)
    alpha[200:, 300:] = 0
    source = write_raster(tmp_path / "rgba.tif", np.concatenate([rgb, alpha[None]]), alpha_band=4)
    labels, features = run(tmp_path, source, "rgba_out", segments=5)
    assert np.array_equal(labels == 0, alpha == 0)
    assert features.shape[0] == 6  # three colour bands were used, alpha was not


def test_naip_four_bands_with_nodata_default_to_first_three(tmp_path):
    out = tmp_path / "naip.tif"
    segment_kmeans(str(NAIP), str(out), segments=5)
    pixels = read_array(NAIP)
    labels = read_array(out)
    nodata = (pixels[:3] == 0).any(axis=0)
    assert np.array_equal(labels == 0, nodata)
    assert read_metadata(gdal.Open(str(out)))["features"]["bands"] == [1, 2, 3]
    segment_kmeans(str(NAIP), str(tmp_path / "nir.tif"), segments=5, bands=[4, 1, 2])
    assert not np.array_equal(read_array(tmp_path / "nir.tif"), labels)


def test_sixteen_bit_input_is_scaled_robustly(tmp_path):
    pixels, truth = stripes(150, 90, 16)
    wide = pixels.astype(np.uint16) * 37 + 1000  # 16-bit values, far outside 0..255
    source = write_raster(tmp_path / "wide.tif", wide)
    labels, features = run(tmp_path, source, "wide_out", segments=2, texture_weight=0.0)
    assert np.array_equal(labels[:, :144], truth[:, :144] + 1)
    ranges = read_metadata(gdal.Open(str(tmp_path / "wide_out_features.tif")))["input_ranges"]
    assert ranges[0][0] == pytest.approx(90 * 37 + 1000) and ranges[0][1] == pytest.approx(130 * 37 + 1000)


def test_float_input_with_nan_is_masked(tmp_path):
    pixels, truth = stripes(96, 64, 16)
    floats = pixels.astype(np.float32) / 255.0
    floats[:, :8, :] = np.nan
    source = write_raster(tmp_path / "float.tif", floats)
    labels, _ = run(tmp_path, source, "float_out", segments=2, texture_weight=0.0)
    assert (labels[:8] == 0).all()
    assert np.array_equal(labels[8:], truth[8:] + 1)  # 96 = 6 stripes: no partial block at the edge


def test_reference_gives_same_ids_on_overlapping_crops(tmp_path):
    first = crop_real(KAMPALA, tmp_path / "first.tif", 800, 600, 400, 400)
    second = crop_real(KAMPALA, tmp_path / "second.tif", 800, 600, 800, 600)  # offsets: multiples of the block
    segment_kmeans(first, str(tmp_path / "first_labels.tif"), segments=8)
    segment_kmeans(second, str(tmp_path / "second_labels.tif"), reference_path=str(tmp_path / "first_labels.tif"))
    a = read_array(tmp_path / "first_labels.tif")[200:600, 400:800]
    b = read_array(tmp_path / "second_labels.tif")[0:400, 0:400]
    # Descriptors see one block of context, which a crop's own border lacks: compare away from the borders.
    ring = 4
    assert np.array_equal(a[ring:-ring, ring:-ring], b[ring:-ring, ring:-ring])
    meta = read_metadata(gdal.Open(str(tmp_path / "second_labels.tif")))
    assert meta["centres"] == read_metadata(gdal.Open(str(tmp_path / "first_labels.tif")))["centres"]
    # Without the reference, the second crop gets its own centres and its ids differ in the overlap.
    segment_kmeans(second, str(tmp_path / "free.tif"), segments=8)
    assert not np.array_equal(read_array(tmp_path / "free.tif")[ring:400 - ring, ring:400 - ring],
                              b[ring:-ring, ring:-ring])


def test_progress_moves_through_every_stage_and_ends_at_one(tmp_path, kampala_crop):
    reports = []
    segment_kmeans(kampala_crop, str(tmp_path / "p.tif"), memory_mb=0.1,
                   progress=Progress(report=lambda f, m: reports.append((f, m))))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    messages = " ".join(m for _, m in reports)
    for stage in ("Measuring", "Describing blocks", "Fitting centres", "Assigning segments"):
        assert stage in messages
    assert len({round(f, 2) for f in fractions}) > 10


@pytest.mark.parametrize("stop_after", [1, 5, 40])
def test_cancel_leaves_nothing_at_the_destination(tmp_path, kampala_crop, stop_after):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > stop_after

    out = tmp_path / "cancelled.tif"
    with pytest.raises(Cancelled):
        segment_kmeans(kampala_crop, str(out), features_path=str(tmp_path / "f.tif"), memory_mb=0.05,
                       progress=Progress(is_cancelled=cancelled))
    assert sorted(os.listdir(tmp_path)) == []


def test_cancel_keeps_an_existing_destination_intact(tmp_path, kampala_crop):
    out = tmp_path / "existing.tif"
    out.write_bytes(b"precious")
    with pytest.raises(Cancelled):
        segment_kmeans(kampala_crop, str(out), memory_mb=0.05, progress=Progress(is_cancelled=lambda: True))
    assert out.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["existing.tif"]


def test_overwriting_drops_the_old_files_overviews_and_statistics(tmp_path, kampala_crop):
    out = str(tmp_path / "labels.tif")
    segment_kmeans(kampala_crop, out, segments=8)
    dataset = gdal.Open(out)
    dataset.BuildOverviews("NEAREST", [2, 4])  # read-only open: GDAL writes labels.tif.ovr
    dataset.GetRasterBand(1).ComputeStatistics(False)
    dataset = None
    reopened = gdal.Open(out)
    reopened.GetRasterBand(1).ComputeStatistics(False)  # stats of a read-only file go to labels.tif.aux.xml
    reopened = None
    assert os.path.exists(out + ".ovr")
    segment_kmeans(kampala_crop, out, segments=2)
    assert not os.path.exists(out + ".ovr") and not os.path.exists(out + ".aux.xml")
    dataset = gdal.Open(out)
    band = dataset.GetRasterBand(1)
    assert band.GetOverviewCount() == 0 and set(np.unique(band.ReadAsArray())) == {1, 2}
    assert band.GetMetadataItem("STATISTICS_MAXIMUM") is None


def test_reference_reuses_the_value_ranges_of_sixteen_bit_input(tmp_path):
    """Raster A holds surfaces of 1000 and 5000, raster B of 5000 and 9000: each stretched by its own percentiles
    the 5000 surface would be bright in A and dark in B; with REFERENCE=A it gets A's id."""
    first, second = two_surfaces(tmp_path / "a.tif", 1000, 5000, 0), two_surfaces(tmp_path / "b.tif", 5000, 9000, 1)
    segment_kmeans(first, str(tmp_path / "a_ids.tif"), segments=2, block=4)
    segment_kmeans(second, str(tmp_path / "b_ids.tif"), segments=2, block=4, reference_path=str(tmp_path / "a_ids.tif"))
    a, b = read_array(tmp_path / "a_ids.tif"), read_array(tmp_path / "b_ids.tif")
    assert set(np.unique(a[:, 32:])) == set(np.unique(b[:, :32])) == {2}  # 5000: the brighter segment of A
    assert set(np.unique(b[:, 32:])) == {2}  # 9000 is nearer A's bright centre than its dark one
    meta = read_metadata(gdal.Open(str(tmp_path / "b_ids.tif")))
    assert meta["features"]["input_ranges"] == read_metadata(gdal.Open(str(tmp_path / "a_ids.tif")))["features"][
        "input_ranges"]


def test_rasters_inside_a_zip_and_gdal_subdataset_names_are_read(tmp_path, kampala_crop):
    import zipfile

    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(kampala_crop, "inner/crop.tif")
    segment_kmeans(kampala_crop, str(tmp_path / "plain.tif"), segments=4)
    segment_kmeans(f"/vsizip/{archive}/inner/crop.tif", str(tmp_path / "zipped.tif"), segments=4)
    assert np.array_equal(read_array(tmp_path / "plain.tif"), read_array(tmp_path / "zipped.tif"))
    with pytest.raises(InputError, match="does not exist"):
        segment_kmeans(f"/vsizip/{archive}/inner/absent.tif", str(tmp_path / "x.tif"))
    with pytest.raises(InputError, match="GDAL cannot read the input raster 'GTIFF_DIR:9:"):
        segment_kmeans(f"GTIFF_DIR:9:{kampala_crop}", str(tmp_path / "x.tif"))
    assert sorted(os.listdir(tmp_path)) == ["plain.qml", "plain.tif", "scene.zip", "zipped.qml", "zipped.tif"]


def test_paletted_rasters_are_segmented_by_colour_not_by_index(tmp_path):
    """A PNG-8: index 1 and index 200 are the same red in its colour table, index 2 is blue, index 7 is
    transparent (PNG keeps palette alpha; GeoTIFF would not)."""
    index = np.zeros((32, 48), np.uint8)
    index[:, :16], index[:, 16:32], index[:, 32:] = 1, 200, 2
    index[:4, :4] = 7
    memory = gdal.GetDriverByName("MEM").Create("", 48, 32, 1, gdal.GDT_Byte)
    table = gdal.ColorTable()
    for entry in range(256):
        table.SetColorEntry(entry, (0, 0, 0, 255))
    for entry, colour in ((1, (200, 0, 0, 255)), (200, (201, 0, 0, 255)), (2, (0, 0, 200, 255)), (7, (0, 0, 0, 0))):
        table.SetColorEntry(entry, colour)
    memory.GetRasterBand(1).SetRasterColorTable(table)
    memory.GetRasterBand(1).WriteArray(index)
    path = str(tmp_path / "paletted.png")
    gdal.GetDriverByName("PNG").CreateCopy(path, memory)
    memory = None
    segment_kmeans(path, str(tmp_path / "ids.tif"), segments=2, block=4)
    ids = read_array(tmp_path / "ids.tif")
    assert (ids[:4, :4] == 0).all()  # transparent in the colour table: nodata
    assert set(np.unique(ids[4:, :32])) == {2} and set(np.unique(ids[:, 32:])) == {1}  # reds together, blue apart
    with pytest.raises(InputError, match="BANDS .* out of range"):  # BANDS refers to the file's own (index) band
        segment_kmeans(path, str(tmp_path / "x.tif"), bands=[2])


def test_ground_control_points_carry_over_to_every_output(tmp_path, kampala_crop):
    from map_segmenter.engine.steps.blur import blur_labels
    from map_segmenter.engine.steps.render import render_labels

    source = gdal.Open(kampala_crop)
    width, height = source.RasterXSize, source.RasterYSize
    corners = [(0, 0), (width, 0), (0, height), (width, height)]
    gcps = [gdal.GCP(32.58 + 0.0001 * x, 0.33 - 0.0001 * y, 0, x, y) for x, y in corners]
    path = str(tmp_path / "scanned.tif")
    copy = gdal.GetDriverByName("GTiff").Create(path, width, height, 3, gdal.GDT_Byte)
    copy.WriteRaster(0, 0, width, height, source.ReadRaster())
    copy.SetGCPs(gcps, source.GetProjection())
    copy = source = None
    segment_kmeans(path, str(tmp_path / "ids.tif"), segments=4, block=4, features_path=str(tmp_path / "f.tif"))
    blur_labels(str(tmp_path / "ids.tif"), str(tmp_path / "blurred.tif"))
    render_labels(str(tmp_path / "ids.tif"), str(tmp_path / "styled.tif"), image_path=path,
                  composite_path=str(tmp_path / "composite.tif"))

    def points(name):
        dataset = gdal.Open(str(tmp_path / name))
        assert dataset.GetGeoTransform(can_return_null=True) is None and "WGS 84" in dataset.GetGCPProjection()
        return [value for g in dataset.GetGCPs() for value in (g.GCPX, g.GCPY, g.GCPPixel, g.GCPLine)]

    expected = [value for g in gcps for value in (g.GCPX, g.GCPY, g.GCPPixel, g.GCPLine)]
    for name in ("ids.tif", "blurred.tif", "styled.tif", "composite.tif"):
        assert points(name) == pytest.approx(expected)
    assert points("f.tif") == pytest.approx([v / 4 if i % 4 >= 2 else v for i, v in enumerate(expected)])


def test_a_strip_thinner_than_a_block_is_segmented(tmp_path):
    strip = np.zeros((3, 3, 1000), np.uint8)
    strip[0, :, :500], strip[2, :, 500:] = 220, 90  # red, then dark blue; the split falls on a block edge
    segment_kmeans(write_raster(tmp_path / "strip.tif", strip), str(tmp_path / "ids.tif"), segments=2, block=4)
    ids = read_array(tmp_path / "ids.tif")
    assert ids.shape == (3, 1000) and (ids[:, :500] == 2).all() and (ids[:, 500:] == 1).all()
