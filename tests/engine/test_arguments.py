"""The engine's Python API refuses bad argument types and values with the InputError the algorithms give,
naming the parameter, instead of a bare TypeError/ValueError or a silent run (MEMORY_MB 0)."""

import pathlib

import numpy as np
import pytest

from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.knn_refine import refine_knn
from map_segmenter.engine.steps.render import render_labels

from helpers import read_array, write_raster


@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arguments")
    rng = np.random.default_rng(3)
    image = write_raster(folder / "image.tif", rng.integers(0, 255, (3, 40, 48)).astype(np.uint8))
    labels, features = str(folder / "labels.tif"), str(folder / "features.tif")
    segment_kmeans(image, labels, segments=3, features_path=features)
    return folder, image, labels, features


def refused(call, fragment):
    with pytest.raises(InputError) as error:
        call()
    assert fragment in str(error.value), str(error.value)
    return str(error.value)


@pytest.mark.parametrize("memory", [0, -5, float("nan"), "256"])
def test_every_entry_point_refuses_a_memory_budget_that_is_not_a_positive_number(rasters, memory):
    folder, image, labels, features = rasters
    out = str(folder / "out.tif")
    expected = "MEMORY_MB must be greater than 0" if memory in (0, -5) else "MEMORY_MB must be a number; got"
    refused(lambda: segment_kmeans(image, out, memory_mb=memory), expected)
    refused(lambda: segment_cnn(image, out, "model.onnx", memory_mb=memory), expected)
    refused(lambda: blur_labels(labels, out, memory_mb=memory), expected)
    refused(lambda: refine_knn(labels, features, out, memory_mb=memory), expected)
    refused(lambda: render_labels(labels, out, memory_mb=memory), expected)
    assert not (folder / "out.tif").exists()


def test_wrong_types_name_the_parameter(rasters):
    folder, image, labels, features = rasters
    out = str(folder / "out.tif")
    assert refused(lambda: segment_kmeans(image, out, segments="8"), "SEGMENTS must be a whole number") == (
        "SEGMENTS must be a whole number; got '8' (str).")
    refused(lambda: segment_kmeans(image, out, block=2.5), "BLOCK_SIZE must be a whole number; got 2.5.")
    refused(lambda: segment_kmeans(image, out, seed=-1), "SEED must be at least 0; got -1.")
    refused(lambda: segment_kmeans(image, out, bands="1,x"), "BANDS '1,x': 'x' is not a band number")
    refused(lambda: segment_kmeans(image, 42), "OUTPUT must be a file path; got 42.")
    refused(lambda: segment_cnn(image, out, "model.onnx", batch_size=None), "BATCH_SIZE must be a whole number")
    refused(lambda: blur_labels(labels, out, strength=["low"]),
            "STRENGTH must be one of low, medium, high; got ['low']")
    refused(lambda: blur_labels(labels, out, iterations="2"), "ITERATIONS must be a whole number")
    refused(lambda: refine_knn(labels, features, out, neighbors=12.5), "NEIGHBORS must be a whole number; got 12.5.")
    refused(lambda: refine_knn(labels, features, out, temperature="2"), "TEMPERATURE must be a number")
    refused(lambda: render_labels(labels, out, opacity="half"), "OPACITY must be a number; got 'half' (str).")
    refused(lambda: render_labels(labels, out, opacity=2), "OPACITY must be between 0 and 1; got 2.0.")
    refused(lambda: render_labels(labels, out, names="a,b,c"), "NAMES must be a list of segment names")
    assert not (folder / "out.tif").exists()


def test_paths_whole_floats_and_band_lists_in_text_are_accepted(rasters, tmp_path):
    _, image, labels, _ = rasters
    segment_kmeans(image, str(tmp_path / "plain.tif"), segments=3, bands=[1, 2, 3])
    segment_kmeans(pathlib.Path(image), tmp_path / "typed.tif", segments=3.0, bands="1,2,3", memory_mb=0.5)
    assert np.array_equal(read_array(tmp_path / "typed.tif"), read_array(tmp_path / "plain.tif"))
    blur_labels(pathlib.Path(labels), tmp_path / "blurred.tif", radius=np.int64(1))
    assert read_array(tmp_path / "blurred.tif").shape == (40, 48)
