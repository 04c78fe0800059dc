"""MEMORY_MB, TILE_SIZE, BATCH_SIZE and THREADS reach the engine: the plan each run logs (windows, tiles, batches,
threads) is the plan the engine makes for those values, and not the defaults' plan.

Equal outputs cannot show this (the results do not depend on these parameters by design), so each test reads the
run's log through processing.run and compares it with the plan on the engine's result object. (segmenter:render
has no MEMORY_MB parameter.)"""

import re

import pytest
from onnx_builders import SHIPPED
from qgis.core import QgsProcessingFeedback

from map_segmenter.engine.backends.onnx_runtime import cpu_cores
from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.knn_refine import refine_knn
from map_segmenter.engine.steps.statistics import segment_statistics

from helpers import KAMPALA, crop_real


class Log(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.lines = []

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.lines.append(info)

    def find(self, pattern):
        """The groups of the first log line matching ``pattern``, as ints where they are numbers."""
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return tuple(int(g) if g.isdigit() else g for g in match.groups())
        raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(self.lines))


def run(processing_run, algorithm, parameters):
    log = Log()
    processing_run(algorithm, parameters, feedback=log)
    return log


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return crop_real(KAMPALA, tmp_path_factory.mktemp("wiring") / "crop.tif", 203, 157, 1500, 1100)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, kampala_crop):
    folder = tmp_path_factory.mktemp("wiring_labels")
    labels, features = str(folder / "labels.tif"), str(folder / "features.tif")
    segment_kmeans(kampala_crop, labels, segments=5, features_path=features)
    return labels, features


def test_kmeans_memory_budget_sets_the_windows(processing_run, tmp_path, kampala_crop):
    engine = segment_kmeans(kampala_crop, str(tmp_path / "e.tif"), segments=4, memory_mb=1)
    default = segment_kmeans(kampala_crop, str(tmp_path / "d.tif"), segments=4)
    assert engine.windows > default.windows == 1
    log = run(processing_run, "segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 4, "MEMORY_MB": 1,
                                                  "OUTPUT": str(tmp_path / "a.tif")})
    assert log.find(r"(\d+) windows, block grid") == (engine.windows,)
    log = run(processing_run, "segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 4,
                                                  "OUTPUT": str(tmp_path / "b.tif")})
    assert log.find(r"(\d+) windows, block grid") == (default.windows,)


CNN_PLAN = r"(\d+) tiles of (\d+) x (\d+) px .* in (\d+) batches of up to (\d+);"


def test_cnn_tile_size_batch_size_and_threads_set_the_tiles_batches_and_session(processing_run, tmp_path, crop):
    engine = segment_cnn(crop, str(tmp_path / "e.tif"), str(SHIPPED), segments=4, tile_size=100, batch_size=3,
                         threads=1)
    # cores of at most 44 px over 204 x 160 px (padded): 5 x 4, balanced to 44 x 40 px: tiles of 100 x 96 px
    assert (engine.tiles, engine.tile_shape, engine.batches, engine.threads) == (20, (96, 100), 7, 1)
    log = run(processing_run, "segmenter:cnn", {"INPUT": crop, "MODEL_PATH": str(SHIPPED), "SEGMENTS": 4,
                                               "TILE_SIZE": 100, "BATCH_SIZE": 3, "THREADS": 1,
                                               "OUTPUT": str(tmp_path / "a.tif")})
    assert log.find(CNN_PLAN) == (20, 100, 96, 7, 3)  # width x height
    assert log.find(r"CPUExecutionProvider .* with THREADS (\d+): (\d+) network run at a time") == (1, 1)

    default = segment_cnn(crop, str(tmp_path / "d.tif"), str(SHIPPED), segments=4)
    cores = cpu_cores()
    assert (default.tiles, default.tile_shape, default.batches, default.threads) == (1, (216, 260), 1, cores)
    log = run(processing_run, "segmenter:cnn", {"INPUT": crop, "MODEL_PATH": str(SHIPPED), "SEGMENTS": 4,
                                               "OUTPUT": str(tmp_path / "b.tif")})
    assert log.find(CNN_PLAN) == (1, 260, 216, 1, 4)  # width x height
    assert log.find(r"CPUExecutionProvider .* with THREADS (\d+) \(one per core\): (\d+) network run") == (0, cores)


def test_cnn_memory_budget_lowers_the_batch_and_sets_the_label_windows(processing_run, tmp_path, crop):
    engine = segment_cnn(crop, str(tmp_path / "e.tif"), str(SHIPPED), segments=4, tile_size=100, batch_size=3,
                         memory_mb=1)
    default = segment_cnn(crop, str(tmp_path / "d.tif"), str(SHIPPED), segments=4, tile_size=100, batch_size=3)
    assert engine.windows > default.windows == 1 and engine.batches == engine.tiles == 20
    log = run(processing_run, "segmenter:cnn", {"INPUT": crop, "MODEL_PATH": str(SHIPPED), "SEGMENTS": 4,
                                               "TILE_SIZE": 100, "BATCH_SIZE": 3, "MEMORY_MB": 1,
                                               "OUTPUT": str(tmp_path / "a.tif")})
    assert log.find(r"BATCH_SIZE (\d+) lowered to (\d+) to stay within MEMORY_MB (\d+)") == (3, 1, 1)
    assert log.find(CNN_PLAN) == (20, 100, 96, 20, 1)
    assert log.find(r"Labels written in (\d+) windows \(MEMORY_MB (\d+)\)") == (engine.windows, 1)


def test_blur_memory_budget_sets_the_windows(processing_run, tmp_path, labelled):
    labels, _ = labelled
    engine = blur_labels(labels, str(tmp_path / "e.tif"), memory_mb=1)
    default = blur_labels(labels, str(tmp_path / "d.tif"))
    assert engine.windows > default.windows
    for memory, expected in ((1, engine.windows), (None, default.windows)):
        parameters = {"INPUT": labels, "OUTPUT": str(tmp_path / f"{memory}.tif")}
        if memory:
            parameters["MEMORY_MB"] = memory
        assert run(processing_run, "segmenter:blur", parameters).find(r"; (\d+) windows;") == (expected,)


def test_knn_refine_memory_budget_sets_the_windows(processing_run, tmp_path, labelled):
    labels, features = labelled
    engine = refine_knn(labels, features, str(tmp_path / "e.tif"), memory_mb=1)
    default = refine_knn(labels, features, str(tmp_path / "d.tif"))
    assert engine.windows > default.windows
    for memory, expected in ((1, engine.windows), (None, default.windows)):
        parameters = {"LABELS": labels, "FEATURES": features, "OUTPUT": str(tmp_path / f"{memory}.tif")}
        if memory:
            parameters["MEMORY_MB"] = memory
        assert run(processing_run, "segmenter:knn_refine", parameters).find(r", (\d+) windows$") == (expected,)


def test_statistics_memory_budget_sets_the_windows(processing_run, tmp_path, labelled):
    labels, _ = labelled
    engine = segment_statistics(labels, str(tmp_path / "e.csv"), memory_mb=1)
    default = segment_statistics(labels, str(tmp_path / "d.csv"))
    assert engine.windows > default.windows
    for memory, expected in ((1, engine.windows), (None, default.windows)):
        parameters = {"INPUT": labels, "OUTPUT": str(tmp_path / f"{memory}.csv")}
        if memory:
            parameters["MEMORY_MB"] = memory
        log = run(processing_run, "segmenter:statistics", parameters)
        assert log.find(r"counted in (\d+) windows \(MEMORY_MB (\d+)\)") == (expected, memory or 256)
