"""segmenter:cnn through processing.run in a real QGIS, with the shipped model in the real ONNX Runtime."""

import hashlib
import os

import numpy as np
import pytest
from onnx_builders import DEFAULT_MODEL, SHIPPED, tiny_model
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)

from map_segmenter.algorithms.qgis_compat import ProcessingParameterFlag
from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

from helpers import KAMPALA, crop_real, read_array, write_raster


class Recorder(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.progress = [], []
        self.progressChanged.connect(self.progress.append)

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.infos.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.infos.append(f"Warning: {warning}")  # warnings reach QGIS as warnings, not as plain info
        super().pushWarning(warning)


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return crop_real(KAMPALA, tmp_path_factory.mktemp("cnn_alg") / "crop.tif", 203, 157, 1500, 1100)


def test_processing_run_matches_the_engine_loads_styled_and_logs_the_provider(processing_run, tmp_path, crop):
    out, features = str(tmp_path / "labels.tif"), str(tmp_path / "features.tif")
    feedback = Recorder()
    result = processing_run("segmenter:cnn", {"INPUT": crop, "MODEL_PATH": str(SHIPPED), "SEGMENTS": 5,
                                              "SEED": 2, "DEVICE": "coreml",
                                              "TILE_SIZE": 100, "BATCH_SIZE": 3, "THREADS": 1,
                                              "OUTPUT": out, "FEATURES": features}, feedback=feedback)
    assert result == {"OUTPUT": out, "FEATURES": features, "SEGMENT_COUNT": 5, "PROVIDER": "CPUExecutionProvider"}
    segment_cnn(crop, str(tmp_path / "engine.tif"), str(SHIPPED), segments=5, seed=2, tile_size=100, batch_size=3,
                threads=1)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    log = "\n".join(feedback.infos)
    assert "Warning: DEVICE=coreml: CoreMLExecutionProvider is not available" in log
    assert "running student_s4_untrained on CPUExecutionProvider (DEVICE=coreml" in log
    assert len(feedback.progress) >= 8 and max(feedback.progress) == pytest.approx(100.0)
    layer = QgsRasterLayer(out, "labels")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    assert [c.label for c in layer.renderer().classes()] == [f"Segment {i}" for i in range(1, 6)]
    assert QgsRasterLayer(features, "features").bandCount() == 32


def test_defaults_run_the_trained_model_its_card_describes(processing_run, tmp_path, crop):
    out, features = str(tmp_path / "labels.tif"), str(tmp_path / "features.tif")
    processing_run("segmenter:cnn", {"INPUT": crop, "OUTPUT": out, "FEATURES": features})
    segment_cnn(crop, str(tmp_path / "engine.tif"), str(DEFAULT_MODEL), segments=8, seed=0,
                features_path=str(tmp_path / "engine_features.tif"))
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    assert set(np.unique(read_array(out))) == set(range(1, 9))
    assert np.array_equal(read_array(features), read_array(tmp_path / "engine_features.tif"), equal_nan=True)
    assert QgsRasterLayer(features, "features").bandCount() == 6
    card = DEFAULT_MODEL.with_suffix(".md").read_text()
    assert f"sha256 `{hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()}`" in card


def test_parameters(processing_run):
    algorithm = QgsApplication.processingRegistry().algorithmById("segmenter:cnn")
    assert algorithm.group() == "Segmentation" and algorithm.displayName() == "CNN segmentation"
    definitions = {p.name(): p for p in algorithm.parameterDefinitions()}
    assert definitions["MODEL"].options() == ["student_s4_v1"]  # the test model is not offered to users
    assert definitions["MODEL"].defaultValue() == "student_s4_v1"
    assert definitions["DEVICE"].options() == ["auto", "cuda", "coreml", "cpu"]
    assert definitions["DEVICE"].defaultValue() == "auto"
    assert definitions["SEGMENTS"].defaultValue() == 8 and definitions["TILE_SIZE"].defaultValue() == 0
    advanced = {name for name, p in definitions.items() if p.flags() & ProcessingParameterFlag.Advanced}
    assert advanced == {"TILE_SIZE", "BATCH_SIZE", "THREADS", "K_MIN", "K_MAX", "MEMORY_MB", "SCHEDULER"}
    optional = {name for name, p in definitions.items() if p.flags() & ProcessingParameterFlag.Optional}
    assert {"BANDS", "MODEL_PATH", "REFERENCE", "FEATURES"} <= optional
    assert "<" not in algorithm.shortHelpString()


def test_model_path_and_reference(processing_run, tmp_path, crop):
    copy = tmp_path / "my model.onnx"
    copy.write_bytes(SHIPPED.read_bytes())
    first = processing_run("segmenter:cnn", {"INPUT": crop, "MODEL_PATH": str(copy), "SEGMENTS": 4,
                                             "OUTPUT": str(tmp_path / "a.tif")})
    again = processing_run("segmenter:cnn", {"INPUT": crop, "REFERENCE": first["OUTPUT"], "MODEL_PATH": str(copy),
                                             "OUTPUT": str(tmp_path / "b.tif")})
    assert again["SEGMENT_COUNT"] == 4
    assert np.array_equal(read_array(first["OUTPUT"]), read_array(again["OUTPUT"]))


def _bad(processing_run, parameters, expected, tmp_path):
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException) as error:
        processing_run("segmenter:cnn", {"OUTPUT": str(out), **parameters})
    assert expected in str(error.value)
    assert not out.exists()
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_bad_inputs_give_actionable_errors(processing_run, tmp_path, crop):
    tiny = write_raster(tmp_path / "tiny.tif", np.random.default_rng(0).integers(0, 255, (3, 8, 8), np.uint8))
    classifier = tiny_model(tmp_path / "classifier.onnx", metadata={"model_type": "classification"})
    static = tiny_model(tmp_path / "static.onnx", input_shape=(1, 3, 64, 64))
    _bad(processing_run, {"INPUT": crop, "MODEL_PATH": str(tmp_path / "gone.onnx")}, "does not exist", tmp_path)
    _bad(processing_run, {"INPUT": crop, "MODEL_PATH": classifier}, "not an embedding model", tmp_path)
    _bad(processing_run, {"INPUT": crop, "MODEL_PATH": static}, "has a static size 64 x 64", tmp_path)
    _bad(processing_run, {"INPUT": tiny, "SEGMENTS": 5}, "Only 4 valid cells (4 x 4 px each) for 5 segments",
         tmp_path)
    _bad(processing_run, {"INPUT": crop, "MODEL_PATH": str(SHIPPED), "TILE_SIZE": 50},
         "TILE_SIZE 50 px leaves no room", tmp_path)
    _bad(processing_run, {"INPUT": crop, "BANDS": [1, 2]}, "The model takes 3 bands (red, green, blue); BANDS gives 2",
         tmp_path)
