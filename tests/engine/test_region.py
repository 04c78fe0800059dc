"""EXTENT and MASK in the engine: a window of the raster on its own grid, nodata outside polygons."""

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from map_segmenter.engine.rasters.region import Region, snapped_window
from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import read_array


def _extent_of(path, xoff, yoff, width, height):
    x0, dx, _, y0, _, dy = gdal.Open(str(path)).GetGeoTransform()
    return x0 + xoff * dx, y0 + (yoff + height) * dy, x0 + (xoff + width) * dx, y0 + yoff * dy


def test_extent_equals_a_run_on_the_same_pixels_cut_out(tmp_path, kampala_crop):
    # an extent that cuts through pixels: it takes every pixel it touches, on the raster's own grid
    xmin, ymin, xmax, ymax = _extent_of(kampala_crop, 101, 57, 203, 151)
    x0, dx, _, y0, _, dy = gdal.Open(kampala_crop).GetGeoTransform()
    extent = (xmin + 0.3 * dx, ymin - 0.2 * dy, xmax - 0.4 * dx, ymax + 0.1 * dy)
    assert snapped_window(gdal.Open(kampala_crop), extent, kampala_crop) == (101, 57, 203, 151)
    segment_kmeans(kampala_crop, str(tmp_path / "window.tif"), segments=5, region=Region(extent=extent))
    gdal.Translate(str(tmp_path / "cut.tif"), kampala_crop, srcWin=[101, 57, 203, 151]).FlushCache()
    segment_kmeans(str(tmp_path / "cut.tif"), str(tmp_path / "expected.tif"), segments=5)
    assert np.array_equal(read_array(tmp_path / "window.tif"), read_array(tmp_path / "expected.tif"))
    window = gdal.Open(str(tmp_path / "window.tif"))
    assert window.GetGeoTransform() == gdal.Open(str(tmp_path / "cut.tif")).GetGeoTransform()
    assert (window.RasterXSize, window.RasterYSize) == (203, 151)


def test_extent_outside_the_raster_is_refused_before_any_output(tmp_path, kampala_crop):
    xmin, ymin, xmax, ymax = _extent_of(kampala_crop, 0, 0, 10, 10)
    far = (xmin - 1e4, ymin - 1e4, xmax - 1e4, ymax - 1e4)
    with pytest.raises(InputError, match="does not overlap the raster"):
        segment_kmeans(kampala_crop, str(tmp_path / "x.tif"), region=Region(extent=far))
    assert not (tmp_path / "x.tif").exists()


def _polygons(path, raster, rings):
    srs = osr.SpatialReference(wkt=gdal.Open(raster).GetProjection())
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("mask", srs, ogr.wkbPolygon)
    for ring in rings:
        feature = ogr.Feature(layer.GetLayerDefn())
        wkt = "POLYGON((" + ",".join(f"{x} {y}" for x, y in ring) + "))"
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    source = None
    return str(path)


def test_mask_leaves_pixels_outside_the_polygons_out_of_the_fit_and_the_output(tmp_path, kampala_crop):
    xmin, ymin, xmax, ymax = _extent_of(kampala_crop, 50, 40, 300, 200)
    mask = _polygons(tmp_path / "mask.gpkg", kampala_crop,
                     [[(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymin)]])  # a triangle
    segment_kmeans(kampala_crop, str(tmp_path / "masked.tif"), segments=4, region=Region(mask_path=mask))
    # the same pixels with an alpha band that is 0 outside the triangle (GDAL's rasterizer draws it)
    inside = gdal.Rasterize("", mask, format="MEM", outputType=gdal.GDT_Byte, burnValues=[255],
                            width=517, height=389, outputBounds=_extent_of(kampala_crop, 0, 0, 517, 389))
    alpha = inside.GetRasterBand(1).ReadAsArray()
    assert 0 < (alpha > 0).mean() < 0.5
    rgba = np.concatenate([read_array(kampala_crop), alpha[None]])
    source = gdal.Open(kampala_crop)
    driver = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "rgba.tif"), 517, 389, 4, gdal.GDT_Byte)
    driver.SetGeoTransform(source.GetGeoTransform())
    driver.SetProjection(source.GetProjection())
    for index in range(4):
        driver.GetRasterBand(index + 1).WriteArray(rgba[index])
    driver.GetRasterBand(4).SetColorInterpretation(gdal.GCI_AlphaBand)
    driver = None
    segment_kmeans(str(tmp_path / "rgba.tif"), str(tmp_path / "expected.tif"), segments=4)
    masked = read_array(tmp_path / "masked.tif")
    assert np.array_equal(masked, read_array(tmp_path / "expected.tif"))
    assert not masked[alpha == 0].any() and masked[alpha > 0].all()


def test_mask_that_misses_the_raster_is_refused(tmp_path, kampala_crop):
    xmin, ymin, xmax, ymax = _extent_of(kampala_crop, 0, 0, 10, 10)
    mask = _polygons(tmp_path / "far.gpkg", kampala_crop,
                     [[(xmin + 1e5, ymin), (xmax + 1e5, ymin), (xmax + 1e5, ymax), (xmin + 1e5, ymin)]])
    with pytest.raises(InputError, match="does not overlap the raster"):
        segment_kmeans(kampala_crop, str(tmp_path / "x.tif"), region=Region(mask_path=mask))
