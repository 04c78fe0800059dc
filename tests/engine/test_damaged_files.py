"""A raster that opens but fails mid-read (a truncated GeoTIFF) is an InputError naming the file and where it
failed, suggesting gdalinfo -checksum, in every step that reads it; nothing is left at the destination."""

import os

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.knn_refine import refine_knn
from map_segmenter.engine.steps.render import render_labels

OPTIONS = ["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64", "COMPRESS=DEFLATE"]


def truncated(source, path, keep=0.6):
    """A compressed tiled copy of ``source`` with its last bytes cut off: its header is whole, it opens, and its
    first rows read; later tiles are missing."""
    gdal.Translate(str(path), str(source), creationOptions=OPTIONS)
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(int(size * keep))
    dataset = gdal.Open(str(path))
    dataset.ReadAsArray(0, 0, dataset.RasterXSize, 8)  # opens, and its first rows are fine
    return str(path)


def damaged(call, path, out):
    with pytest.raises(InputError) as error:
        call()
    message = str(error.value)
    assert message.startswith(f"The raster '{path}' is damaged or incomplete: GDAL failed to read it in rows ")
    assert "TIFFReadEncodedTile() failed" in message
    assert message.endswith(f"Check it with `gdalinfo -checksum {path}` (it reports every block it cannot read), "
                            f"then copy, download or export it again.")
    assert not [name for name in os.listdir(os.path.dirname(out)) if name.startswith(os.path.basename(out)[:3])]
    return message


def test_truncated_image(tmp_path, kampala_crop):
    path = truncated(kampala_crop, tmp_path / "cut.tif")
    out = str(tmp_path / "out" / "labels.tif")
    os.mkdir(tmp_path / "out")
    message = damaged(lambda: segment_kmeans(path, out, segments=4), path, out)
    assert "in rows 0..388, columns 0..516 (" in message  # the window read: here the whole crop
    message = damaged(lambda: segment_kmeans(path, out, segments=4, memory_mb=0.3), path, out)
    rows = message.split("in rows ")[1].split(",")[0]
    first, last = (int(value) for value in rows.split(".."))
    assert 0 < first <= last < 389  # the window (a strip) that failed


def test_truncated_labels_and_features(tmp_path, kampala_crop):
    labels, features = tmp_path / "labels.tif", tmp_path / "features.tif"
    segment_kmeans(kampala_crop, str(labels), segments=5, features_path=str(features))
    os.mkdir(tmp_path / "out")
    out = str(tmp_path / "out" / "result.tif")
    cut_labels = truncated(labels, tmp_path / "cut_labels.tif", keep=0.8)
    damaged(lambda: blur_labels(cut_labels, out), cut_labels, out)
    damaged(lambda: render_labels(cut_labels, out), cut_labels, out)
    damaged(lambda: refine_knn(cut_labels, str(features), out), cut_labels, out)
    cut_features = truncated(features, tmp_path / "cut_features.tif", keep=0.8)
    damaged(lambda: refine_knn(str(labels), cut_features, out), cut_features, out)
    gdal.Translate(str(tmp_path / "int16.tif"), str(labels), outputType=gdal.GDT_Int16)  # read by a min/max scan
    cut_int16 = truncated(tmp_path / "int16.tif", tmp_path / "cut_int16.tif", keep=0.8)
    with pytest.raises(InputError, match="is damaged or incomplete: GDAL failed to read it") as error:
        blur_labels(cut_int16, out)
    assert f"gdalinfo -checksum {cut_int16}" in str(error.value)
    assert np.unique(gdal.Open(str(labels)).ReadAsArray()).size == 5  # the sources are intact
