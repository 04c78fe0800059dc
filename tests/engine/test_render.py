"""render_labels on real label rasters: palettes, colour table, .qml, composite, quicklook, errors."""

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.labels import read_metadata
from map_segmenter.engine.rasters.palette import qualitative, ramp
from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.render import render_labels

from helpers import read_array, write_raster


@pytest.fixture(scope="module")
def labels(tmp_path_factory, kampala_crop):
    path = tmp_path_factory.mktemp("render") / "labels.tif"
    segment_kmeans(kampala_crop, str(path), segments=5)
    return str(path)


def colour_table(path):
    dataset = gdal.Open(str(path))  # keep the dataset alive while its band is used (GDAL would crash)
    table = dataset.GetRasterBand(1).GetRasterColorTable()
    return [table.GetColorEntry(i) for i in range(table.GetCount())]


def test_palettes_have_many_distinct_colours():
    assert len(set(qualitative(30))) == 30
    assert len(set(qualitative(254))) > 200
    assert ramp(5)[0] == (68, 1, 84) and ramp(5)[-1] == (253, 231, 37)


def test_qualitative_styling_keeps_ids_and_grid(tmp_path, labels):
    out = tmp_path / "styled.tif"
    render_labels(labels, str(out), names=["roof", "road", "soil", "grass", "trees"])
    assert np.array_equal(read_array(out), read_array(labels))
    assert gdal.Open(str(out)).GetGeoTransform() == gdal.Open(labels).GetGeoTransform()
    assert colour_table(out)[1:6] == [(*c, 255) for c in qualitative(5)]
    assert colour_table(out)[0] == (0, 0, 0, 0)
    meta = read_metadata(gdal.Open(str(out)))
    assert meta["names"] == ["roof", "road", "soil", "grass", "trees"] and meta["palette"] == "qualitative"
    assert meta["centres"] == read_metadata(gdal.Open(labels))["centres"]  # downstream steps still find them
    qml = (tmp_path / "styled.qml").read_text()
    assert 'label="grass"' in qml and qml.count("<paletteEntry") == 5


def test_mean_colour_palette_is_the_mean_of_each_segment(tmp_path, labels, kampala_crop):
    out = tmp_path / "mean.tif"
    result = render_labels(labels, str(out), palette="mean_colour", image_path=kampala_crop, memory_mb=0.05)
    ids, rgb = read_array(labels), read_array(kampala_crop)
    for segment in range(1, 6):
        expected = tuple(int(round(v)) for v in rgb[:, ids == segment].mean(axis=1))
        assert result.colours[segment - 1] == expected
    assert colour_table(out)[3] == (*result.colours[2], 255)


def test_composite_blends_colours_over_the_image(tmp_path, labels, kampala_crop):
    pixels = read_array(kampala_crop)
    ids = read_array(labels)
    ids_with_hole = ids.copy()
    ids_with_hole[:10] = 0
    holed = write_raster(tmp_path / "holed.tif", ids_with_hole, geotransform=gdal.Open(labels).GetGeoTransform())
    composite = tmp_path / "composite.tif"
    quicklook = tmp_path / "quick.png"
    result = render_labels(holed, str(tmp_path / "s.tif"), image_path=kampala_crop, opacity=0.25,
                           composite_path=str(composite), quicklook_path=str(quicklook), memory_mb=0.05)
    blended = read_array(composite)
    colours = np.array([(0, 0, 0), *result.colours], np.float32)
    expected = np.rint(pixels * 0.75 + np.moveaxis(colours[ids_with_hole], -1, 0) * 0.25).astype(np.uint8)
    assert np.array_equal(blended[:3, 10:], expected[:, 10:])
    assert (blended[3, :10] == 0).all() and (blended[3, 10:] == 255).all()
    png = gdal.Open(str(quicklook))
    assert png.RasterCount == 4 and max(png.RasterXSize, png.RasterYSize) <= 1024


def test_errors(tmp_path, labels, kampala_crop):
    with pytest.raises(InputError, match="has 3 bands; a label raster has one band"):
        render_labels(kampala_crop, str(tmp_path / "x.tif"))
    floats = write_raster(tmp_path / "floats.tif", np.ones((4, 4), np.float32))
    with pytest.raises(InputError, match="holds Float32 values, not integer segment ids"):
        render_labels(floats, str(tmp_path / "x.tif"))
    signed = write_raster(tmp_path / "signed.tif", np.ones((4, 4), np.int16))
    with pytest.raises(InputError, match="holds Int16 ids; .* gdal_translate -ot UInt16"):
        render_labels(signed, str(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()
    with pytest.raises(InputError, match="need IMAGE"):
        render_labels(labels, str(tmp_path / "x.tif"), palette="mean_colour")
    other = write_raster(tmp_path / "other.tif", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(InputError, match="not on the grid"):
        render_labels(labels, str(tmp_path / "x.tif"), image_path=other, composite_path=str(tmp_path / "c.tif"))
    with pytest.raises(InputError, match="3 segment names given for 5"):
        render_labels(labels, str(tmp_path / "x.tif"), names=["a", "b", "c"])
    assert not (tmp_path / "x.tif").exists()


def test_sixteen_bit_imagery_is_stretched_in_the_composite(tmp_path):
    from map_segmenter.engine.rasters.raster_io import open_input, robust_range

    rng = np.random.default_rng(3)
    image = write_raster(tmp_path / "u16.tif", rng.integers(500, 10_000, (3, 40, 50)).astype(np.uint16))
    ids = np.ones((40, 50), np.uint8)
    ids[:, 25:] = 2
    labels = write_raster(tmp_path / "ids.tif", ids)
    composite = tmp_path / "composite.tif"
    render_labels(labels, str(tmp_path / "styled.tif"), image_path=image, opacity=0.0, composite_path=str(composite))
    ranges = robust_range(open_input(image))
    pixels = read_array(image).astype(np.float32)
    expected = [np.rint(np.clip((pixels[b] - lo) * np.float32(255.0 / (hi - lo)), 0, 255)) for b, (lo, hi)
                in enumerate(ranges)]
    assert np.array_equal(read_array(composite)[:3], np.stack(expected).astype(np.uint8))
    assert len(np.unique(read_array(composite)[0])) > 200  # the scene, not a white sheet


def test_a_declared_nodata_other_than_zero_is_nodata_everywhere(tmp_path):
    ids = np.full((20, 30), 255, np.uint8)
    ids[2:-2, 2:-2] = np.arange(1, 4).repeat(9)[:26][None, :].repeat(16, 0)
    labels = write_raster(tmp_path / "ids.tif", ids, nodata=255)
    image = write_raster(tmp_path / "image.tif", np.full((3, 20, 30), 90, np.uint8))
    styled, composite, quicklook = (str(tmp_path / name) for name in ("styled.tif", "composite.tif", "ql.png"))
    result = render_labels(labels, styled, image_path=image, composite_path=composite, quicklook_path=quicklook)
    border = ids == 255
    assert result.segments == 3
    assert (read_array(styled)[border] == 0).all() and np.array_equal(read_array(styled)[~border], ids[~border])
    assert gdal.Open(styled).GetRasterBand(1).GetNoDataValue() == 0
    assert np.array_equal(read_array(composite)[3], np.where(border, 0, 255))
    assert np.array_equal(read_array(quicklook)[3], np.where(border, 0, 255))
