"""segmenter:blur through processing.run in a real QGIS."""

import os
import re

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer

from map_segmenter.algorithms.qgis_compat import ProcessingParameterFlag
from map_segmenter.engine.rasters.labels import read_metadata
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels

from helpers import read_array, write_raster


@pytest.fixture(scope="module")
def labels(tmp_path_factory, kampala_crop):
    out = tmp_path_factory.mktemp("blur_alg") / "labels.tif"
    segment_kmeans(kampala_crop, str(out), segments=6, block=4, seed=1)
    return str(out)


def test_processing_run_matches_the_engine_and_loads_styled(processing_run, tmp_path, labels):
    out = str(tmp_path / "smooth.tif")
    result = processing_run("segmenter:blur", {"INPUT": labels, "OUTPUT": out})  # majority, medium
    assert result == {"OUTPUT": out, "SEGMENT_COUNT": 6}
    blur_labels(labels, str(tmp_path / "engine.tif"), method="majority", strength="medium")
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    assert not np.array_equal(read_array(out), read_array(labels))
    layer = QgsRasterLayer(out, "smooth")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    assert [c.label for c in layer.renderer().classes()] == [f"Segment {i}" for i in range(1, 7)]
    assert read_metadata(gdal.Open(out))["centres"] == read_metadata(gdal.Open(labels))["centres"]


def test_every_parameter_reaches_the_engine(processing_run, tmp_path, labels):
    parameters = {"INPUT": labels, "METHOD": 1, "STRENGTH": 2, "ITERATIONS": 2, "MEMORY_MB": 1,
                  "OUTPUT": str(tmp_path / "a.tif")}
    processing_run("segmenter:blur", parameters)
    blur_labels(labels, str(tmp_path / "e.tif"), method="gaussian", strength="high", iterations=2)
    assert np.array_equal(read_array(tmp_path / "a.tif"), read_array(tmp_path / "e.tif"))
    processing_run("segmenter:blur", {"INPUT": labels, "STRENGTH": 0, "RADIUS": 7, "OUTPUT": str(tmp_path / "r.tif")})
    blur_labels(labels, str(tmp_path / "er.tif"), radius=7)
    assert np.array_equal(read_array(tmp_path / "r.tif"), read_array(tmp_path / "er.tif"))
    assert read_metadata(gdal.Open(str(tmp_path / "r.tif")))["blur"][0]["kernel_px"] == 15


def _bad(processing_run, parameters, expected, tmp_path):
    out = parameters.get("OUTPUT", str(tmp_path / "never.tif"))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(QgsProcessingException, match=expected):
        processing_run("segmenter:blur", {"OUTPUT": out, **parameters})
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no partial file


def test_bad_inputs_give_actionable_errors_and_write_nothing(processing_run, tmp_path, labels, kampala_crop):
    floats = write_raster(tmp_path / "floats.tif", np.full((40, 40), 1.5, np.float32))
    _bad(processing_run, {"INPUT": floats}, "holds Float32 values, not integer segment ids", tmp_path)
    _bad(processing_run, {"INPUT": kampala_crop}, "has 3 bands; a label raster has one band", tmp_path)
    _bad(processing_run, {"INPUT": labels, "RADIUS": -2}, "Incorrect parameter value for RADIUS", tmp_path)
    _bad(processing_run, {"INPUT": labels, "OUTPUT": labels}, "is also an input", tmp_path)
    _bad(processing_run, {"INPUT": labels, "OUTPUT": str(tmp_path / "no" / "x.tif")}, "does not exist", tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root may write into a read-only folder, but nobody can create files in /proc
    target = str(locked / "x.tif") if not os.access(locked, os.W_OK) else "/proc/smooth.tif"
    try:
        _bad(processing_run, {"INPUT": labels, "OUTPUT": target}, "Cannot write .* Choose a folder you can write to",
             tmp_path)
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


def test_help_and_group(processing_run):
    algorithm = QgsApplication.processingRegistry().algorithmById("segmenter:blur")
    assert algorithm is not None
    assert algorithm.groupId() == "postprocessing" and algorithm.group() == "Post-processing"
    text = algorithm.shortHelpString()
    assert not re.search(r"<[a-zA-Z/][^>]*>", text)
    for word in ("Method", "Strength", "Radius", "Iterations", "Memory budget", "nodata", "Ties"):
        assert word in text
    advanced = {parameter.name() for parameter in algorithm.parameterDefinitions()
                if parameter.flags() & ProcessingParameterFlag.Advanced}
    assert advanced == {"RADIUS", "MEMORY_MB", "SCHEDULER"}
    assert algorithm.parameterDefinition("STRENGTH").defaultValue() == 1  # medium
