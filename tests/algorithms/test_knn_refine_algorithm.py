"""segmenter:knn_refine through processing.run in a real QGIS."""

import os

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer

from map_segmenter.algorithms.qgis_compat import ProcessingParameterFlag
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.knn_refine import refine_knn

from helpers import KAMPALA, crop_real, read_array, write_raster


@pytest.fixture(scope="module")
def pair(tmp_path_factory, kampala_crop):
    folder = tmp_path_factory.mktemp("knn_alg")
    labels, features = str(folder / "labels.tif"), str(folder / "features.tif")
    segment_kmeans(kampala_crop, labels, segments=5, block=4, features_path=features)
    return labels, features


def test_processing_run_matches_the_engine_and_loads_styled(processing_run, tmp_path, pair):
    labels, features = pair
    out = str(tmp_path / "refined.tif")
    result = processing_run("segmenter:knn_refine", {"LABELS": labels, "FEATURES": features, "OUTPUT": out})
    assert result == {"OUTPUT": out, "SEGMENT_COUNT": 5}
    refine_knn(labels, features, str(tmp_path / "engine.tif"))  # the engine's defaults are the algorithm's
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    assert not np.array_equal(read_array(out), read_array(labels))
    layer = QgsRasterLayer(out, "refined")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    assert [c.label for c in layer.renderer().classes()] == [f"Segment {i}" for i in range(1, 6)]


def test_every_parameter_reaches_the_engine(processing_run, tmp_path, pair):
    labels, features = pair
    options = dict(neighbors=5, temperature=0.5, mix=0.9, iterations=3, spatial_weight=0.5, seed=3,
                   index_size=1500)
    result = processing_run("segmenter:knn_refine", {
        "LABELS": labels, "FEATURES": features, "OUTPUT": str(tmp_path / "a.tif"), "MEMORY_MB": 1,
        **{name.upper(): value for name, value in options.items()}})
    refine_knn(labels, features, str(tmp_path / "b.tif"), **options)
    assert np.array_equal(read_array(result["OUTPUT"]), read_array(tmp_path / "b.tif"))
    refine_knn(labels, features, str(tmp_path / "c.tif"))
    assert not np.array_equal(read_array(result["OUTPUT"]), read_array(tmp_path / "c.tif"))
    earlier = processing_run("segmenter:knn_refine", {
        "LABELS": labels, "FEATURES": features, "OUTPUT": str(tmp_path / "d.tif"), "METHOD": 1,
        **{name.upper(): value for name, value in options.items()}})
    refine_knn(labels, features, str(tmp_path / "e.tif"), method="predecessor", **options)
    assert np.array_equal(read_array(earlier["OUTPUT"]), read_array(tmp_path / "e.tif"))
    assert not np.array_equal(read_array(earlier["OUTPUT"]), read_array(result["OUTPUT"]))


def test_algorithm_description(processing_run):
    algorithm = QgsApplication.processingRegistry().algorithmById("segmenter:knn_refine")
    assert algorithm.group() == "Post-processing" and algorithm.groupId() == "postprocessing"
    advanced = {p.name() for p in algorithm.parameterDefinitions()
                if p.flags() & ProcessingParameterFlag.Advanced}
    assert advanced == {"INDEX_SIZE", "METHOD", "MEMORY_MB", "SCHEDULER"}
    names = [p.name() for p in algorithm.parameterDefinitions()]
    assert names == ["LABELS", "FEATURES", "NEIGHBORS", "TEMPERATURE", "MIX", "ITERATIONS", "SPATIAL_WEIGHT",
                     "SEED", "INDEX_SIZE", "METHOD", "MEMORY_MB", "SCHEDULER", "OUTPUT"]
    help_text = algorithm.shortHelpString()
    labels = [p.description().split(" (")[0] for p in algorithm.parameterDefinitions()]
    assert "<" not in help_text and all(label in help_text for label in labels)


def _bad(processing_run, parameters, expected, tmp_path):
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException) as error:
        processing_run("segmenter:knn_refine", {"OUTPUT": str(out), **parameters})
    assert expected in str(error.value)
    assert not out.exists()
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_bad_inputs_give_actionable_errors_and_write_nothing(processing_run, tmp_path, pair, kampala_crop):
    labels, features = pair
    _bad(processing_run, {"LABELS": features, "FEATURES": labels}, "holds Float32 values", tmp_path)
    shifted = crop_real(KAMPALA, tmp_path / "shifted.tif", 517, 389, 1205, 803)  # 4 px east of kampala_crop
    other = str(tmp_path / "other_features.tif")
    segment_kmeans(shifted, str(tmp_path / "other.tif"), segments=5, block=4, features_path=other)
    _bad(processing_run, {"LABELS": labels, "FEATURES": other}, "not on matching grids", tmp_path)
    cropped = str(tmp_path / "cropped.tif")
    gdal.Translate(cropped, features, srcWin=[1, 0, 100, 98])
    _bad(processing_run, {"LABELS": labels, "FEATURES": cropped}, "different extent", tmp_path)
    plain = write_raster(tmp_path / "plain.tif", read_array(labels), gdal.Open(labels).GetGeoTransform(),
                         nodata=0)
    _bad(processing_run, {"LABELS": plain, "FEATURES": features}, "their CRS differ", tmp_path)
    with pytest.raises(QgsProcessingException, match="is also an input"):
        processing_run("segmenter:knn_refine", {"LABELS": labels, "FEATURES": features, "OUTPUT": labels})
    with pytest.raises(QgsProcessingException, match="does not exist"):
        processing_run("segmenter:knn_refine", {"LABELS": labels, "FEATURES": features,
                                                "OUTPUT": str(tmp_path / "no" / "x.tif")})
    assert read_array(labels).max() == 5  # the input is intact


def test_unwritable_output_folder(processing_run, tmp_path, pair):
    labels, features = pair
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    target = str(locked / "x.tif") if not os.access(locked, os.W_OK) else "/proc/refined.tif"
    try:
        with pytest.raises(QgsProcessingException, match="Cannot write .* Choose a folder you can write to"):
            processing_run("segmenter:knn_refine", {"LABELS": labels, "FEATURES": features, "OUTPUT": target})
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []
