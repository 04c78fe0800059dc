"""Degenerate results are said: fewer segments than asked (a one-colour raster), segments smoothed away, and an
image given where labels belong; the number of segments reported is the number that occur in the output."""

import numpy as np
from osgeo import gdal

from map_segmenter.engine.rasters.labels import PresentIds
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.render import render_labels

from helpers import KAMPALA, read_array, write_raster


def recording():
    warnings = []
    return Progress(warn=warnings.append), warnings


def grey_photo(path):
    """Band 1 of a real orthophoto crop as a one-band Byte GeoTIFF without Map Segmenter metadata."""
    gdal.Translate(str(path), str(KAMPALA), bandList=[1], srcWin=[1200, 800, 301, 203],
                   creationOptions=["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"])
    return str(path)


def test_a_one_colour_raster_reports_the_one_segment_it_gets(tmp_path):
    colour = np.array([90, 120, 60], np.uint8)[:, None, None]
    source = write_raster(tmp_path / "flat.tif", np.broadcast_to(colour, (3, 60, 70)).copy())
    progress, warnings = recording()
    result = segment_kmeans(source, str(tmp_path / "labels.tif"), segments=8, progress=progress)
    assert np.unique(read_array(tmp_path / "labels.tif")).tolist() == [1]
    assert result.present == 1 and len(result.centres) == 8
    assert warnings == [
        f"Only 1 of the 8 segments occur in the output (id 1): the valid pixels of '{source}' are too alike to make "
        f"8 kinds of region (the other centres are nearest to none). The result has 1 segment."
    ]
    progress, warnings = recording()
    normal = segment_kmeans(str(KAMPALA), str(tmp_path / "real.tif"), segments=5, progress=progress)
    assert normal.present == 5 and warnings == []


def test_blur_and_render_of_a_grey_photo_warn_that_it_is_not_a_label_raster(tmp_path):
    photo = grey_photo(tmp_path / "grey.tif")
    values = np.unique(read_array(photo))
    distinct = int(np.count_nonzero(values))  # 0 is nodata for labels
    assert distinct > 64
    doubt = (f"'{photo}' does not look like a label raster: it has no Map Segmenter metadata and {distinct} distinct "
             f"values, as an image has, so each value is taken as a segment (ids up to {values.max()}). If it is an "
             f"image, segment it first with segmenter:kmeans or segmenter:cnn and use their OUTPUT here.")
    progress, warnings = recording()
    blurred = blur_labels(photo, str(tmp_path / "blurred.tif"), progress=progress)
    assert warnings[0] == doubt
    assert blurred.present == np.count_nonzero(np.unique(read_array(tmp_path / "blurred.tif")))
    assert blurred.present < distinct  # smoothing a photo loses values: said, and counted
    assert warnings[1].startswith(f"Only {blurred.present} of the {values.max()} segments occur in the output")
    progress, warnings = recording()
    rendered = render_labels(photo, str(tmp_path / "styled.tif"), progress=progress)
    assert warnings[0] == doubt and rendered.present == distinct


def test_blur_says_which_segments_it_smoothed_away(tmp_path):
    ids = np.ones((80, 90), np.uint8)
    ids[:, 45:] = 2
    ids[20:22, 10:12] = 3  # a 2 x 2 px island: gone under an 11 px majority
    ids[60:62, 70:72] = 4
    path = write_raster(tmp_path / "labels.tif", ids)
    progress, warnings = recording()
    result = blur_labels(path, str(tmp_path / "out.tif"), progress=progress)
    assert np.unique(read_array(tmp_path / "out.tif")).tolist() == [1, 2]
    assert result.present == 2 and result.segments == 4
    assert warnings == ["Only 2 of the 4 segments occur in the output (ids 1, 2): smoothing removed ids 3, 4: their "
                        "regions were smaller than the kernel. The result has 2 segments."]


def test_a_classification_with_a_few_ids_and_no_metadata_is_not_doubted(tmp_path):
    ids = (np.arange(64 * 64).reshape(64, 64) // 400 % 11 + 1).astype(np.uint8)  # ids 1..11, large regions
    path = write_raster(tmp_path / "classes.tif", ids)
    progress, warnings = recording()
    result = render_labels(path, str(tmp_path / "styled.tif"), progress=progress)
    assert warnings == [] and result.present == 11


def test_present_ids_are_exact_in_any_window_order():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 40, (300, 200)).astype(np.uint16)
    ids[ids == 17] = 0  # an id missing between others
    ids[5, 5] = 900
    present = PresentIds()
    for rows in np.array_split(np.arange(300), 7)[::-1]:
        present.add(ids[rows])
    expected = sorted(set(np.unique(ids).tolist()) - {0})
    assert present.ids == expected and present.count == len(expected) and present.highest == 900
