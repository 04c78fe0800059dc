"""The one segmentation pipeline (engine/segmentation/pipeline.py) with a third method written in this file alone, and
the typed raster contracts it builds on: Settings, FeatureMeta / LabelMeta, LabelRaster, FeatureRaster, colour
tables."""

import os

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.colour_tables import colour_table, table_colours
from map_segmenter.engine.rasters.feature_raster import STRIP_OPTIONS, FeatureRaster
from map_segmenter.engine.rasters.labels import LabelRaster, read_metadata, write_metadata
from map_segmenter.engine.rasters.metadata import FeatureMeta, LabelMeta
from map_segmenter.engine.rasters.raster_io import open_input
from map_segmenter.engine.rasters.windows import Window, plan_windows
from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.segmentation.pipeline import Cells, FeatureExtractor, Settings, linear_indices, segment

from helpers import read_array, write_raster


class MeanColour(FeatureExtractor):
    """A third method: the mean red of each 2 x 2 px cell, one channel; ids by that mean."""

    method = "mean_red"
    stage = "Averaging"
    stages = (("Starting", 1), ("Averaging", 1), ("Fitting centres", 1), ("Assigning segments", 1))
    unit = "windows"
    cell_units = "cells"
    advice = "Choose fewer SEGMENTS."
    feature_options = STRIP_OPTIONS
    stride, channels = 2, 1

    def __init__(self, window_pixels):
        self.window_pixels = window_pixels

    def check_raster(self, raster):
        self.raster = raster

    def reference_mismatch(self, reference):
        return None if reference.features.kind == self.method else f"was made by {reference.method}."

    def plan(self, raster, settings, reference, progress):
        self.grid = Window.whole(raster.width, raster.height).on_grid(self.stride)
        self.windows = plan_windows(raster.width, raster.height, self.window_pixels, step=self.stride)
        return self.windows

    def read(self, window):
        return window, self.raster.read(window)[0].astype(np.float32)

    def compute(self, window, red):
        cells = window.on_grid(self.stride)
        padded = np.zeros((cells.height * 2, cells.width * 2), np.float32)
        padded[: red.shape[0], : red.shape[1]] = red
        means = padded.reshape(cells.height, 2, cells.width, 2).mean(axis=(1, 3))[None]
        rows, cols = np.nonzero(np.ones(means.shape[1:], bool))
        return [Cells(cells, means, linear_indices(rows, cols, cells, self.grid.width), means[0][rows, cols, None])]

    def fit(self, sample, segments, seed, check, start=None):
        return np.sort(np.quantile(sample[:, 0], np.linspace(0.1, 0.9, segments)))[:, None]

    def feature_meta(self, raster):
        return FeatureMeta(self.method, ["mean_red"], self.stride, {}, raster.bands, None)

    def label_windows(self, raster, settings, segments, progress):
        return self.windows


@pytest.fixture
def two_halves(tmp_path):
    """Left half dark, right half light (red 40 / 200), 32 x 20 px."""
    pixels = np.zeros((3, 20, 32), np.uint8)
    pixels[0, :, :16], pixels[0, :, 16:] = 40, 200
    return write_raster(tmp_path / "halves.tif", pixels)


@pytest.mark.parametrize("window_pixels", [10**6, 64])
def test_a_third_method_is_one_extractor(tmp_path, two_halves, window_pixels):
    settings = Settings.checked(two_halves, str(tmp_path / "labels.tif"), segments=2,
                                features_path=str(tmp_path / "features.tif"), sample_size=100)
    run = segment(MeanColour(window_pixels), settings, Progress())
    labels = read_array(tmp_path / "labels.tif")
    assert labels.shape == (20, 32) and run.present == 2 and run.valid_cells == 10 * 16
    assert (labels[:, :16] == 1).all() and (labels[:, 16:] == 2).all()
    features = read_array(tmp_path / "features.tif")
    assert features.shape == (10, 16) and features[0, 0] == 40 and features[0, 15] == 200
    meta = LabelMeta.read(gdal.Open(str(tmp_path / "labels.tif")))
    assert (meta.k, meta.method, meta.features.kind, meta.features.stride) == (2, "mean_red", "mean_red", 2)
    assert FeatureMeta.read(gdal.Open(str(tmp_path / "features.tif"))).names == ["mean_red"]

    again = Settings.checked(two_halves, str(tmp_path / "again.tif"), reference_path=str(tmp_path / "labels.tif"))
    segment(MeanColour(window_pixels), again, Progress())
    assert np.array_equal(read_array(tmp_path / "again.tif"), labels)


def test_the_extractor_says_what_a_reference_must_match(tmp_path, two_halves):
    made_by_kmeans = str(tmp_path / "kmeans.tif")
    segment_kmeans(two_halves, made_by_kmeans, segments=2, block=2)
    settings = Settings.checked(two_halves, str(tmp_path / "labels.tif"), reference_path=made_by_kmeans)
    with pytest.raises(InputError, match=f"The reference '{made_by_kmeans}' was made by kmeans."):
        segment(MeanColour(64), settings, Progress())
    assert not (tmp_path / "labels.tif").exists()


@pytest.mark.parametrize("arguments, message", [
    (dict(segments=1), r"SEGMENTS must be 0 \(automatic\) or between 2 and 254; got 1."),
    (dict(segments=9, sample_size=8), r"The sample size \(8\) must be at least SEGMENTS \(9\)."),
    (dict(seed=-1), "SEED"),
    (dict(memory_mb=0), "MEMORY_MB"),
])
def test_settings_are_checked_once_for_every_method(arguments, message):
    with pytest.raises(InputError, match=message):
        Settings.checked("in.tif", "out.tif", **arguments)


def test_metadata_parses_leniently_and_keeps_what_it_does_not_know():
    features = dict(kind="cnn", names=["e1"], stride=4, model={"name": "m"}, halo=12, bands=[1, 2, 3],
                    input_ranges=None)
    meta = FeatureMeta.parse(features)
    assert (meta.kind, meta.stride, meta.details) == ("cnn", 4, {"model": {"name": "m"}, "halo": 12})
    assert meta.as_dict() == features and list(meta.as_dict()) == list(features)
    assert FeatureMeta.parse(dict(stride="4")).stride is None and FeatureMeta.parse("junk") == FeatureMeta()
    labels = LabelMeta.parse(dict(k=3, names=["a", "b", "c"], version="1", blur=[{}], stride=8, features="junk"))
    assert labels.k == 3 and labels.names_for(3) == ["a", "b", "c"] and labels.names_for(2) is None
    assert labels.stride == 8 and labels.carried() == dict(blur=[{}], stride=8, features="junk")
    assert LabelMeta.parse(dict(k=70000)).k is None and LabelMeta.parse(dict(k=True)).k is None


def test_label_raster_reads_windows_with_other_nodata_as_zero(tmp_path):
    ids = np.arange(12, dtype=np.uint16).reshape(3, 4) % 5
    path = write_raster(tmp_path / "ids.tif", ids, nodata=4)
    dataset = gdal.Open(path, gdal.GA_Update)
    write_metadata(dataset, k=3)
    dataset = None
    labels = LabelRaster.open(path)
    assert labels.segments == 3 and labels.dtype == np.uint16 and labels.output_type == gdal.GDT_UInt16
    window = labels.read(Window(1, 1, 3, 2))
    expected = ids[1:3, 1:4].copy()
    expected[expected == 4] = 0
    assert np.array_equal(window, expected) and read_metadata(labels.dataset)["k"] == 3
    float_path = write_raster(tmp_path / "float.tif", ids.astype(np.float32))
    with pytest.raises(InputError, match="holds Float32 values, not integer segment ids"):
        LabelRaster.open(float_path)


def test_feature_raster_opens_reads_by_window_and_tells_usable_cells(tmp_path):
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    values[0, 0, 0], values[1, 2, 3] = np.nan, -1
    path = write_raster(tmp_path / "features.tif", values, nodata=-1)
    features = FeatureRaster.open(path)
    assert features.nodata == [-1, -1] and features.grid == Window(0, 0, 4, 3)
    read = features.read(Window(2, 1, 2, 2))
    assert np.array_equal(read, values[:, 1:3, 2:4])
    assert features.usable(features.read(features.grid)).tolist() == [
        [False, True, True, True], [True, True, True, True], [True, True, True, False]]
    ids = write_raster(tmp_path / "ids.tif", np.ones((3, 4), np.uint8))
    with pytest.raises(InputError, match="holds Byte values; it should be the Float32 FEATURES raster"):
        FeatureRaster.open(ids)


def test_scratch_features_are_a_file_read_back_exactly_and_given_up_without_filling(tmp_path, monkeypatch):
    """Features no FEATURES output keeps go to a raw scratch file, not through GDAL's block cache: what any
    window wrote reads back exactly, in any window. A Ctrl+C early in a run used to close a scratch GeoTIFF, which
    wrote NaN into every tile not yet written (80 MB here) only to delete the file."""
    raster = open_input(write_raster(tmp_path / "image.tif", np.zeros((3, 4096, 4096), np.uint8)))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    features = FeatureRaster.create(raster, 4, 5, STRIP_OPTIONS, scratch=str(scratch))
    assert features.grid == Window(0, 0, 1024, 1024)
    values = np.random.default_rng(0).normal(size=(5, 40, 1024)).astype(np.float32)
    features.write(Window(0, 0, 1024, 24), values[:, :24])  # a strip, then two tiles of the next rows
    features.write(Window(0, 24, 600, 16), values[:, 24:, :600])
    features.write(Window(600, 24, 424, 16), values[:, 24:, 600:])
    for window in (Window(0, 0, 1024, 40), Window(3, 20, 700, 9), Window(1023, 39, 1, 1)):
        assert np.array_equal(features.read(window), values[:, window.yoff:window.yoff + window.height,
                                                              window.xoff:window.xoff + window.width])
    assert np.array_equal(features.dataset.ReadAsArray(5, 30, 7, 2), values[:, 30:32, 5:12])
    allocated = {}
    remove = os.remove
    monkeypatch.setattr(os, "remove", lambda path: (allocated.setdefault(path, os.stat(path).st_blocks * 512),
                                                    remove(path)))
    features.finish(keep=False)
    assert os.listdir(scratch) == []
    [(removed, size)] = allocated.items()
    assert os.path.dirname(removed) == str(scratch) and size < 1_000_000  # the 40 rows written (820 kB)


def test_colour_tables_are_written_and_read_in_one_place(tmp_path):
    path = write_raster(tmp_path / "ids.tif", np.ones((2, 2), np.uint8))
    dataset = gdal.Open(path, gdal.GA_Update)
    band = dataset.GetRasterBand(1)
    band.SetRasterColorTable(colour_table([(10, 20, 30), (40, 50, 60)]))
    assert table_colours(band, 2) == [(10, 20, 30), (40, 50, 60)]
    assert table_colours(band, [2, 0]) == [(40, 50, 60), (0, 0, 0)]
    assert table_colours(band, 3) is None  # the table does not reach id 3
