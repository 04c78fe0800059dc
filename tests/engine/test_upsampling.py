"""engine/segmentation/upsampling.write_labels_bilinear gives the first bilinear label pass's labels
(tests/bilinear_reference.py) bit for bit: on random, quantised (many exact ties), duplicated-centre, NaN, invalid, huge
and K > 255 cases, strides 1, 3, 4 and 8, any windows and thread count."""

import numpy as np
import pytest
from bilinear_reference import write_labels_bilinear as reference
from osgeo import gdal

from map_segmenter.engine.rasters.raster_io import open_input
from map_segmenter.engine.rasters.windows import plan_windows
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation import upsampling

from helpers import write_raster


class Labels:
    """Collects what a label pass writes."""

    def __init__(self, width, height):
        self.array = np.full((height, width), 250, np.uint16)

    def write(self, pixels, xoff, yoff):
        self.array[yoff : yoff + pixels.shape[0], xoff : xoff + pixels.shape[1]] = pixels

    def release_cache(self):
        pass


def features_dataset(cells):
    bands, height, width = cells.shape
    dataset = gdal.GetDriverByName("MEM").Create("", width, height, bands, gdal.GDT_Float32)
    for index in range(bands):
        dataset.GetRasterBand(index + 1).WriteArray(cells[index])
    return dataset


def both(tmp_path, cells, centres, stride, width, height, nodata_box=None, max_pixels=None):
    image = np.full((3, height, width), 100, np.uint8)
    if nodata_box is not None:
        y0, y1, x0, x1 = nodata_box
        image[:, y0:y1, x0:x1] = 0
    raster = open_input(write_raster(tmp_path / "image.tif", image, nodata=0 if nodata_box else None))
    features = features_dataset(np.asarray(cells, np.float32))
    windows = plan_windows(width, height, max_pixels or width * height, step=stride)
    expected = Labels(width, height)
    reference(raster, windows, stride, features, centres, expected, Progress())
    results = []
    for workers in (1, 2):
        got = Labels(width, height)
        upsampling.write_labels_bilinear(raster, windows, stride, features, centres, got, Progress(),
                                         workers=workers)
        results.append(got.array)
    return expected.array, results, len(windows)


def grid_shape(width, height, stride):
    return -(-height // stride), -(-width // stride)


@pytest.mark.parametrize("stride", [1, 3, 4, 8])
@pytest.mark.parametrize("windows", [None, 900])
def test_random_and_quantised_features(tmp_path, stride, windows):
    rng = np.random.default_rng(stride)
    width, height = 61, 47
    rows, cols = grid_shape(width, height, stride)
    centres = rng.normal(size=(5, 3))
    for cells in (rng.normal(size=(3, rows, cols)),
                  np.round(rng.normal(size=(3, rows, cols)) * 2) / 2):  # many exact ties
        expected, results, count = both(tmp_path, cells, centres, stride, width, height, max_pixels=windows)
        assert windows is None or count > 1
        for got in results:
            assert np.array_equal(got, expected)


def test_duplicated_centres_and_cells_halfway_tie_to_the_first(tmp_path):
    width, height, stride = 40, 36, 4
    rows, cols = grid_shape(width, height, stride)
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])  # 1 and 2 are the same centre
    cells = np.zeros((2, rows, cols))
    cells[0] = np.where((np.arange(cols) // 2) % 2, 1.0, 0.25)[None, :]
    cells[0, ::3] = 0.75  # halfway between centres 0.5 and 1: exact ties after interpolation
    expected, results, _ = both(tmp_path, cells, centres, stride, width, height)
    assert set(np.unique(expected)) <= {1, 2, 4} and 3 not in np.unique(expected)
    for got in results:
        assert np.array_equal(got, expected)


def test_invalid_cells_nodata_pixels_and_nan_from_a_broken_model(tmp_path):
    rng = np.random.default_rng(7)
    width, height, stride = 50, 42, 4
    rows, cols = grid_shape(width, height, stride)
    centres = rng.normal(size=(4, 3))
    cells = rng.normal(size=(3, rows, cols))
    cells[:, 2:4, 3:6] = np.nan  # invalid cells (NaN in every band)
    expected, results, _ = both(tmp_path, cells, centres, stride, width, height, nodata_box=(5, 15, 20, 33))
    assert (expected == 0).any()
    for got in results:
        assert np.array_equal(got, expected)
    cells[1, 6, 7] = np.nan  # a NaN in a valid cell's other band: argmin's NaN ranking
    expected, results, _ = both(tmp_path, cells, centres, stride, width, height)
    for got in results:
        assert np.array_equal(got, expected)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_huge_values_and_more_than_255_centres(tmp_path):
    rng = np.random.default_rng(3)
    width, height, stride = 33, 29, 4
    rows, cols = grid_shape(width, height, stride)
    centres = np.array([[0.0, 0.0], [1e19, 0.0], [-1e19, 0.0], [3e18, 1.0]])
    cells = rng.choice([0.0, 1e19, -1e19, 2e19, 5e18], size=(2, rows, cols))  # squared distances overflow to inf
    expected, results, _ = both(tmp_path, cells, centres, stride, width, height)
    for got in results:
        assert np.array_equal(got, expected)
    centres = rng.normal(size=(300, 2))
    cells = rng.normal(size=(2, rows, cols))
    expected, results, _ = both(tmp_path, cells, centres, stride, width, height)
    assert expected.max() > 255
    for got in results:
        assert np.array_equal(got, expected)


def test_first_minimum_is_argmin():
    rng = np.random.default_rng(0)
    values = np.round(rng.random((7, 1000)) * 20).astype(np.float32)  # many ties
    values[3, 10] = np.inf
    assert np.array_equal(upsampling.first_minimum(values), values.argmin(axis=0))
    values[2, 5] = np.nan
    assert np.array_equal(upsampling.first_minimum(values), values.argmin(axis=0))


@pytest.mark.parametrize("stride", [3, 4])
def test_pieces_of_cells_and_of_blocks_change_nothing(tmp_path, monkeypatch, stride):
    """The distance loops (CHUNK cells) and the interpolated dual blocks (BLOCK_CHUNK) in tiny pieces, with
    invalid cells and many candidates: the same labels as the reference."""
    monkeypatch.setattr(upsampling, "CHUNK", 7)
    monkeypatch.setattr(upsampling, "BLOCK_CHUNK", 5)
    rng = np.random.default_rng(7)
    width, height = 83, 59
    rows, cols = grid_shape(width, height, stride)
    centres = rng.normal(size=(9, 3)) * 0.3  # close centres: blocks with 3 or more candidates
    cells = np.round(rng.normal(size=(3, rows, cols)) * 4) / 4
    cells[:, 3:6, 4:9] = np.nan  # cells without valid pixels
    cells[:, -1, -2] = np.nan
    expected, results, _ = both(tmp_path, cells, centres, stride, width, height, nodata_box=(10, 30, 20, 45),
                                max_pixels=1500)
    for got in results:
        assert np.array_equal(got, expected)


def test_nearest_cells_is_the_first_minimum_and_clear_is_the_margin_to_the_second(monkeypatch):
    monkeypatch.setattr(upsampling, "CHUNK", 333)
    rng = np.random.default_rng(1)
    for segments in (2, 5, 9):
        distances = (np.round(rng.random((segments, 50, 70)) * 4) / 4).astype(np.float32)  # many exact ties
        distances[:, 0, :3] = np.inf  # all infinite: the first, not clear
        distances[-1, 1, :3] = 1e38  # huge values
        index, clear = upsampling._nearest_cells(distances)
        assert np.array_equal(index, distances.argmin(axis=0))
        ordered = np.sort(distances, axis=0).astype(np.float64)
        expected = (ordered[1] > ordered[0] * upsampling._CLEAR_FACTOR + upsampling._CLEAR_FLOOR) & (
            ordered[0] < upsampling._CLEAR_CEILING)
        assert np.array_equal(clear, expected)
