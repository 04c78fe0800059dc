"""Segmenting what is on the map: an XYZ layer over local tiles, a styled vector layer, EXTENT on a raster file and
MASK polygons, through processing.run and qgis_process, with real QGIS providers and no network."""

import json
import math
import subprocess

import numpy as np
import pytest
from osgeo import gdal
from PIL import Image
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

from map_segmenter.algorithms.map_input import render_layer
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import DATA, KAMPALA, qgis_process, read_array, write_raster

BUILDINGS = DATA / "kampala_oam" / "fair_sample2_osm_buildings.geojson"
ZOOM = 20
WORLD = 20037508.342789244  # half the side of the EPSG:3857 square

# QGIS's WMS/XYZ provider draws each tile into a destination rect rounded outwards to whole pixels since qgis/QGIS
# PR #61591 "Fix visible gaps in between xyz tiles" (QGIS 3.44; LTR backport #61651; 3.40.6 predates it). At the native
# resolution a tile edge that floating point puts a hair outside a pixel boundary widens that tile's rect to 257 px,
# and the 256 px tile is stretched into it nearest-neighbour: every drawn pixel is still a tile pixel, but up to one
# pixel from its place (QGIS 3.44.16: 56 % of pixels differ from the tiles side by side, by 4.5 per channel on
# average; K-Means agrees on 97 %). Provider.block() over one tile's extent shows it too, with the provider's
# resampling set to nearest, at any DPI and tilePixelRatio: the plugin cannot undo it. Where it is drawn this way the
# tests assert what still holds; 3.22 and 3.40.6 draw the tiles exactly and are held to exact equality.
TILES_STRETCHED = Qgis.QGIS_VERSION_INT >= 34007
# Bounds where tiles are stretched, measured on 3.44.16 (in brackets: the same with the layer drawn off by a little)
MIN_AGREEMENT = 0.95  # segments equal to the tiles' segments: 0.974 and 0.977 (2 px off: 0.90 and 0.91)
MIN_IN_PLACE = 0.38  # drawn pixels equal to the tile pixel at their place: 0.444 (0.5 px off: 0.282)
MAX_MEAN_DIFFERENCE = 5.5  # mean |drawn - tiles| per RGB channel: 4.53 (0.5 px off: 6.57)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """An XYZ tile folder made from the bundled Kampala raster by GDAL's gdal2tiles (zoom 20, 256 px PNGs)."""
    folder = tmp_path_factory.mktemp("xyz")
    subprocess.run(["gdal2tiles.py", "--xyz", f"-z{ZOOM}", "-w", "none", "-r", "average", "-q", str(KAMPALA),
                    str(folder)], check=True, capture_output=True)
    return folder


def xyz_uri(folder):
    return f"wms://type=xyz&url=file://{folder}/{{z}}/{{x}}/{{y}}.png&zmin={ZOOM}&zmax={ZOOM}"


def tile_extent(x, y, count_x, count_y):
    """EPSG:3857 extent of count_x x count_y tiles of zoom ZOOM from tile (x, y)."""
    side = 2 * WORLD / 2**ZOOM
    return QgsRectangle(-WORLD + x * side, WORLD - (y + count_y) * side, -WORLD + (x + count_x) * side,
                        WORLD - y * side)


def mosaic_of_tiles(folder, x, y, count_x, count_y, path):
    """The same tiles put side by side with numpy: what drawing the layer at its native zoom must give."""
    rows = []
    for ty in range(y, y + count_y):
        rows.append(np.concatenate([np.asarray(Image.open(folder / str(ZOOM) / str(tx) / f"{ty}.png").convert("RGBA"))
                                    for tx in range(x, x + count_x)], axis=1))
    rgba = np.concatenate(rows, axis=0).transpose(2, 0, 1)
    extent = tile_extent(x, y, count_x, count_y)
    pixel = 2 * WORLD / 2**ZOOM / 256
    return write_raster(path, rgba, geotransform=(extent.xMinimum(), pixel, 0.0, extent.yMaximum(), 0.0, -pixel),
                        epsg=3857, alpha_band=4)


def tiles_around(folder, x, y, count_x, count_y):
    """(4, h + 512, w + 512) RGBA of the tiles from (x, y) with one ring of their neighbours (a tile just outside the
    extent may be stretched one pixel into it)."""
    rows = [np.concatenate([np.asarray(Image.open(folder / str(ZOOM) / str(tx) / f"{ty}.png").convert("RGBA"))
                            for tx in range(x - 1, x + count_x + 1)], axis=1)
            for ty in range(y - 1, y + count_y + 1)]
    return np.concatenate(rows, axis=0).transpose(2, 0, 1)


def assert_drawn_like_tiles(folder, x, y, count_x, count_y, tiles_path):
    """Draw the XYZ layer over these tiles as the algorithms do and compare it with the tiles side by side: equal,
    or where QGIS stretches tiles (TILES_STRETCHED) every pixel a tile pixel at most one pixel from its place."""
    extent = tile_extent(x, y, count_x, count_y)
    layer = QgsRasterLayer(xyz_uri(folder).removeprefix("wms://"), "xyz", "wms")
    assert layer.isValid()
    path = render_layer(layer, extent, 2 * WORLD / 2**ZOOM / 256, QgsCoordinateReferenceSystem("EPSG:3857"),
                        QgsProject.instance().transformContext(), QgsProcessingFeedback())
    try:
        drawn, tiles = read_array(path).astype(int), read_array(tiles_path).astype(int)
        assert gdal.Open(path).GetGeoTransform() == pytest.approx(gdal.Open(tiles_path).GetGeoTransform(), abs=1e-6)
    finally:
        gdal.Unlink(path)
    assert drawn.shape == tiles.shape == (4, 256 * count_y, 256 * count_x)
    if not TILES_STRETCHED:
        assert np.array_equal(drawn, tiles)
        return
    assert (drawn[3] == 255).all()
    height, width = drawn.shape[1:]
    around = tiles_around(folder, x, y, count_x, count_y).astype(int)
    found = np.zeros((height, width), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            found |= (drawn == around[:, 256 + dy:256 + dy + height, 256 + dx:256 + dx + width]).all(axis=0)
    assert found.all(), f"{(~found).sum()} drawn pixels are no tile pixel within one pixel of their place"
    assert (drawn == tiles).all(axis=0).mean() >= MIN_IN_PLACE
    assert np.abs(drawn[:3] - tiles[:3]).mean() <= MAX_MEAN_DIFFERENCE


def assert_segmented_like_tiles(segments_path, expected_path):
    segments, expected = read_array(segments_path), read_array(expected_path)
    if not TILES_STRETCHED:
        assert np.array_equal(segments, expected)
        return
    assert segments.shape == expected.shape
    assert np.array_equal(np.unique(segments), np.unique(expected))
    assert (segments == expected).mean() >= MIN_AGREEMENT


def full_tiles(folder):
    """A block of tiles that the raster covers entirely (gdal2tiles' fully inside tiles)."""
    xs = sorted(int(p.name) for p in (folder / str(ZOOM)).iterdir())
    ys = sorted(int(p.stem) for p in (folder / str(ZOOM) / str(xs[0])).iterdir())
    return xs[1], ys[1], 3, 2


def drawn_rasters():
    from pathlib import Path

    from qgis.core import QgsProcessingUtils

    return sorted(Path(QgsProcessingUtils.tempFolder()).rglob("rendered_input.tif"))


def test_an_xyz_layer_is_drawn_at_its_zoom_and_segmented_like_its_tiles(processing_run, tiles, tmp_path):
    x, y, count_x, count_y = full_tiles(tiles)
    extent = tile_extent(x, y, count_x, count_y)
    out = str(tmp_path / "xyz.tif")
    drawn_before = drawn_rasters()
    result = processing_run("segmenter:kmeans", {
        "INPUT": xyz_uri(tiles), "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},"
                                          f"{extent.yMaximum()} [EPSG:3857]",
        "SEGMENTS": 5, "OUTPUT": out})
    assert result["SEGMENT_COUNT"] == 5
    assert drawn_rasters() == drawn_before  # the drawn layer is a temporary file, removed after the run
    expected = mosaic_of_tiles(tiles, x, y, count_x, count_y, tmp_path / "tiles.tif")
    segment_kmeans(expected, str(tmp_path / "expected.tif"), segments=5)
    assert_segmented_like_tiles(out, tmp_path / "expected.tif")
    assert_drawn_like_tiles(tiles, x, y, count_x, count_y, expected)
    written = gdal.Open(out)
    assert written.GetGeoTransform() == pytest.approx(gdal.Open(expected).GetGeoTransform(), abs=1e-6)
    assert (written.RasterXSize, written.RasterYSize) == (256 * count_x, 256 * count_y)
    assert "3857" in written.GetProjection()


def test_an_xyz_layer_through_qgis_process(tiles, tmp_path):
    x, y, count_x, count_y = full_tiles(tiles)
    extent = tile_extent(x, y, 2, 1)
    out = tmp_path / "cli_xyz.tif"
    completed = qgis_process("run", "segmenter:kmeans", "--json", "--", f"INPUT={xyz_uri(tiles)}",
                             f"EXTENT={extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},"
                             f"{extent.yMaximum()} [EPSG:3857]", "SEGMENTS=4", f"OUTPUT={out}")
    assert json.loads(completed.stdout)["results"]["SEGMENT_COUNT"] == 4
    expected = mosaic_of_tiles(tiles, x, y, 2, 1, tmp_path / "tiles.tif")
    segment_kmeans(expected, str(tmp_path / "expected.tif"), segments=4)
    assert_segmented_like_tiles(out, tmp_path / "expected.tif")
    assert gdal.Open(str(out)).GetGeoTransform() == pytest.approx(gdal.Open(expected).GetGeoTransform(), abs=1e-6)


def test_a_web_layer_without_extent_asks_for_one(processing_run, tiles, tmp_path):
    with pytest.raises(QgsProcessingException, match="Area to segment"):
        processing_run("segmenter:kmeans", {"INPUT": xyz_uri(tiles), "OUTPUT": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()


def test_an_absurd_pixel_size_says_how_large_and_suggests_one(processing_run, tiles, tmp_path):
    extent = tile_extent(*full_tiles(tiles))
    with pytest.raises(QgsProcessingException) as error:
        processing_run("segmenter:kmeans", {
            "INPUT": xyz_uri(tiles), "PIXEL_SIZE": 0.0001,
            "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},{extent.yMaximum()} [EPSG:3857]",
            "OUTPUT": str(tmp_path / "x.tif")})
    message = str(error.value)
    width = math.ceil(extent.width() / 0.0001)
    assert f"{width} x" in message and "GPix" in message and "pixel size of at least" in message
    assert not (tmp_path / "x.tif").exists()


def test_an_unreachable_web_layer_is_reported(processing_run, tmp_path):
    extent = tile_extent(100, 100, 1, 1)
    uri = f"wms://type=xyz&url=file://{tmp_path}/missing/{{z}}/{{x}}/{{y}}.png&zmin={ZOOM}&zmax={ZOOM}"
    with pytest.raises(QgsProcessingException, match="drew nothing over this extent: the server may be unreachable"):
        processing_run("segmenter:kmeans", {
            "INPUT": uri, "OUTPUT": str(tmp_path / "x.tif"),
            "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},{extent.yMaximum()} [EPSG:3857]"})
    assert not (tmp_path / "x.tif").exists()


def test_a_styled_vector_layer_is_drawn_with_its_style(processing_run, tmp_path):
    layer = QgsVectorLayer(str(BUILDINGS), "buildings", "ogr")
    assert layer.isValid()
    layer.renderer().symbol().setColor(layer.renderer().symbol().color().fromRgb(200, 30, 30))
    out = str(tmp_path / "buildings.tif")
    result = processing_run("segmenter:kmeans", {"INPUT": layer, "PIXEL_SIZE": 0.000005, "SEGMENTS": 2,
                                                 "OUTPUT": out})
    labels = read_array(out)
    written = gdal.Open(out)
    assert "4326" in written.GetProjection() and written.GetGeoTransform()[1] == pytest.approx(0.000005)
    # drawn pixels (the buildings) are segmented; the empty map between them is nodata
    assert result["SEGMENT_COUNT"] == 2 and 0.05 < (labels > 0).mean() < 0.6
    assert written.GetRasterBand(1).GetNoDataValue() == 0


def test_a_vector_layer_needs_a_pixel_size(processing_run, tmp_path):
    with pytest.raises(QgsProcessingException, match="Pixel size"):
        processing_run("segmenter:kmeans", {"INPUT": str(BUILDINGS), "OUTPUT": str(tmp_path / "x.tif")})


def test_extent_on_a_raster_file_lines_up_with_a_full_run(processing_run, kampala_crop, tmp_path):
    x0, dx, _, y0, _, dy = gdal.Open(kampala_crop).GetGeoTransform()
    # an extent cutting through pixels 60.4 .. 260.7 x 30.2 .. 180.9
    xmin, xmax = x0 + 60.4 * dx, x0 + 260.7 * dx
    ymax, ymin = y0 + 30.2 * dy, y0 + 180.9 * dy
    out = str(tmp_path / "part.tif")
    processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [EPSG:3857]",
                                        "SEGMENTS": 4, "OUTPUT": out})
    part = gdal.Open(out)
    assert part.GetGeoTransform() == pytest.approx((x0 + 60 * dx, dx, 0, y0 + 30 * dy, 0, dy))
    assert (part.RasterXSize, part.RasterYSize) == (201, 151)
    gdal.Translate(str(tmp_path / "cut.tif"), kampala_crop, srcWin=[60, 30, 201, 151]).FlushCache()
    segment_kmeans(str(tmp_path / "cut.tif"), str(tmp_path / "expected.tif"), segments=4)
    assert np.array_equal(read_array(out), read_array(tmp_path / "expected.tif"))


def test_mask_polygons_in_another_crs_leave_nodata_outside(processing_run, tmp_path):
    """The building polygons (EPSG:4326) as MASK over the Kampala raster (EPSG:3857): outside them nodata."""
    crop = str(tmp_path / "crop.tif")
    gdal.Translate(crop, str(KAMPALA), srcWin=[800, 600, 600, 400]).FlushCache()
    out = str(tmp_path / "masked.tif")
    processing_run("segmenter:kmeans", {"INPUT": crop, "MASK": str(BUILDINGS), "SEGMENTS": 3, "OUTPUT": out})
    labels = read_array(out)
    reference = read_array(DATA / "kampala_oam" / "kampala_osm_buildings_mask.tif")[600:1000, 800:1400]
    inside = labels > 0
    assert 0.05 < inside.mean() < 0.7
    # the bundled mask raster is the same polygons rasterised on this grid: they agree but on boundary pixels
    assert (inside == (reference > 0)).mean() > 0.98
