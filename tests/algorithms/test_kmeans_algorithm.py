"""segmenter:kmeans through processing.run in a real QGIS."""

import os

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsRasterLayer

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import DUBAI_IMAGES, SWISS, read_array, write_raster


def test_processing_run_matches_the_engine_and_loads_styled(processing_run, tmp_path, kampala_crop):
    out = str(tmp_path / "labels.tif")
    result = processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 6, "BLOCK_SIZE": 4,
                                                 "SEED": 2, "OUTPUT": out, "FEATURES": str(tmp_path / "f.tif")})
    assert result["OUTPUT"] == out and result["SEGMENT_COUNT"] == 6 and result["FEATURES"] == str(tmp_path / "f.tif")
    segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=6, block=4, seed=2)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    layer = QgsRasterLayer(out, "labels")
    assert layer.isValid()
    assert layer.renderer().type() == "paletted"
    assert [c.label for c in layer.renderer().classes()] == [f"Segment {i}" for i in range(1, 7)]


def test_bands_parameter_and_memory_budget(processing_run, tmp_path):
    naip = str(tmp_path / "naip.tif")
    gdal.Translate(naip, str(SWISS.parent / "naip_m_4709963_se_14_1_20190904_5m_RGBN.tif"))
    a = processing_run("segmenter:kmeans", {"INPUT": naip, "BANDS": [4, 1, 2], "SEGMENTS": 4,
                                            "MEMORY_MB": 1, "OUTPUT": str(tmp_path / "a.tif")})
    b = processing_run("segmenter:kmeans", {"INPUT": naip, "BANDS": [4, 1, 2], "SEGMENTS": 4,
                                            "OUTPUT": str(tmp_path / "b.tif")})
    assert np.array_equal(read_array(a["OUTPUT"]), read_array(b["OUTPUT"]))
    c = processing_run("segmenter:kmeans", {"INPUT": naip, "SEGMENTS": 4, "OUTPUT": str(tmp_path / "c.tif")})
    assert not np.array_equal(read_array(a["OUTPUT"]), read_array(c["OUTPUT"]))


def test_jpeg_without_crs(processing_run, tmp_path):
    jpeg = str(sorted(DUBAI_IMAGES.glob("*.jpg"))[3])
    result = processing_run("segmenter:kmeans", {"INPUT": jpeg, "SEGMENTS": 5, "OUTPUT": str(tmp_path / "d.tif")})
    dataset = gdal.Open(result["OUTPUT"])
    assert dataset.GetGeoTransform(can_return_null=True) is None and dataset.GetProjection() == ""
    source = gdal.Open(jpeg)
    assert (dataset.RasterXSize, dataset.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    segment_kmeans(jpeg, str(tmp_path / "engine.tif"), segments=5)
    assert np.array_equal(read_array(result["OUTPUT"]), read_array(tmp_path / "engine.tif"))


def _bad(processing_run, parameters, expected, tmp_path):
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException) as error:
        processing_run("segmenter:kmeans", {"OUTPUT": str(out), **parameters})
    assert expected in str(error.value)
    assert not out.exists()
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]
    return str(error.value)


def test_bad_inputs_give_actionable_errors_and_write_nothing(processing_run, tmp_path, kampala_crop):
    grey = write_raster(tmp_path / "grey.tif", np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))
    two = write_raster(tmp_path / "two.tif", np.zeros((2, 64, 64), np.uint8) + 7)
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    tiny = write_raster(tmp_path / "tiny.tif", np.random.default_rng(0).integers(0, 255, (3, 8, 8), np.uint8))
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(open(kampala_crop, "rb").read()[:5000])
    _bad(processing_run, {"INPUT": grey}, "Choose the bands to segment with BANDS", tmp_path)
    _bad(processing_run, {"INPUT": two}, "The raster has 2 colour bands", tmp_path)
    _bad(processing_run, {"INPUT": kampala_crop, "BANDS": [1, 2, 5]}, "BANDS [5] out of range", tmp_path)
    _bad(processing_run, {"INPUT": kampala_crop, "SEGMENTS": 1}, "SEGMENTS", tmp_path)
    _bad(processing_run, {"INPUT": kampala_crop, "SEGMENTS": 255}, "SEGMENTS", tmp_path)
    _bad(processing_run, {"INPUT": tiny, "SEGMENTS": 5, "BLOCK_SIZE": 4}, "Only 4 valid blocks for 5 segments",
         tmp_path)
    _bad(processing_run, {"INPUT": empty}, "has no valid pixels", tmp_path)
    _bad(processing_run, {"INPUT": kampala_crop, "BLOCK_SIZE": 600}, "larger than the raster", tmp_path)
    _bad(processing_run, {"INPUT": str(corrupt)}, "corrupt", tmp_path)
    with pytest.raises(QgsProcessingException, match="does not exist"):
        processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "OUTPUT": str(tmp_path / "no" / "x.tif")})
    with pytest.raises(QgsProcessingException, match="is also an input"):
        processing_run("segmenter:kmeans", {"INPUT": grey, "BANDS": [1], "OUTPUT": grey})
    assert np.array_equal(read_array(grey), np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))  # untouched


def test_unwritable_output_folder(processing_run, tmp_path, kampala_crop):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root may write into a read-only folder, but nobody can create files in /proc
    target = str(locked / "x.tif") if not os.access(locked, os.W_OK) else "/proc/segments.tif"
    try:
        with pytest.raises(QgsProcessingException, match="Cannot write .* Choose a folder you can write to"):
            processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "OUTPUT": target})
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


def test_bands_written_as_text_are_read_as_band_numbers_and_logged(processing_run, tmp_path):
    """qgis_process passes BANDS=4,1,2 as the text '4,1,2', which QGIS itself read as band 0."""
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def pushInfo(self, info):  # noqa: N802 - QGIS API
            self.lines.append(info)

    naip = str(tmp_path / "naip.tif")
    gdal.Translate(naip, str(SWISS.parent / "naip_m_4709963_se_14_1_20190904_5m_RGBN.tif"), srcWin=[0, 0, 300, 200])
    listed = processing_run("segmenter:kmeans", {"INPUT": naip, "BANDS": [4, 1, 2], "SEGMENTS": 4,
                                                 "OUTPUT": str(tmp_path / "listed.tif")})
    for number, text in enumerate(("4,1,2", "4;1;2", " 4, 1 ,2 ")):
        feedback = Log()
        out = str(tmp_path / f"text{number}.tif")
        processing_run("segmenter:kmeans", {"INPUT": naip, "BANDS": text, "SEGMENTS": 4, "OUTPUT": out},
                       feedback=feedback)
        assert np.array_equal(read_array(out), read_array(listed["OUTPUT"]))
        assert f"BANDS: bands 4, 1, 2 (from '{text}')" in feedback.lines
    _bad(processing_run, {"INPUT": naip, "BANDS": "4,one"}, "BANDS '4,one': 'one' is not a band number", tmp_path)
    _bad(processing_run, {"INPUT": naip, "BANDS": "1,2,9"}, "BANDS [9] out of range", tmp_path)


def test_a_truncated_input_is_named_with_where_it_failed(processing_run, tmp_path, kampala_crop):
    """A GeoTIFF cut short opens, then fails mid-read: an error naming the file, not a raw traceback."""
    cut = str(tmp_path / "cut.tif")
    gdal.Translate(cut, kampala_crop, creationOptions=["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64",
                                                       "COMPRESS=DEFLATE"])
    with open(cut, "r+b") as handle:
        handle.truncate(int(os.path.getsize(cut) * 0.6))
    message = _bad(processing_run, {"INPUT": cut}, f"The raster '{cut}' is damaged or incomplete: GDAL failed to "
                   f"read it in rows 0..388, columns 0..516", tmp_path)
    assert f"Check it with `gdalinfo -checksum {cut}`" in message
