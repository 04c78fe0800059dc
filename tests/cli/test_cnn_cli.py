"""segmenter:cnn from the shell (``qgis_process`` in a subprocess) and the plugin in a QGIS without onnxruntime."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

from helpers import KAMPALA, ROOT, crop_real, qgis_process, read_array

MODEL = str(ROOT / "tests" / "models" / "student_s4_untrained.onnx")


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return crop_real(KAMPALA, tmp_path_factory.mktemp("cnn_cli") / "crop.tif", 203, 157, 1500, 1100)


def test_help_lists_every_parameter_in_plain_text():
    text = qgis_process("help", "segmenter:cnn").stdout
    for name in ("INPUT", "BANDS", "MODEL", "MODEL_PATH", "SEGMENTS", "DEVICE", "SEED", "REFERENCE", "TILE_SIZE",
                 "BATCH_SIZE", "THREADS", "MEMORY_MB", "OUTPUT", "FEATURES"):
        assert f"{name}:" in text
    assert "student_s4_v1" in text and "student_s4_untrained" not in text and "coreml" in text
    assert "-m pip install" not in text and "<b>" not in text


def test_run_with_an_unavailable_device_falls_back_and_matches_the_engine(tmp_path, crop):
    out = tmp_path / "cli.tif"
    completed = qgis_process("run", "segmenter:cnn", "--json", "--", f"INPUT={crop}", "SEGMENTS=4", "DEVICE=cuda",
                             f"MODEL_PATH={MODEL}", f"OUTPUT={out}")
    report = json.loads(completed.stdout)
    assert report["results"]["OUTPUT"] == str(out) and report["results"]["SEGMENT_COUNT"] == 4
    assert report["results"]["PROVIDER"] == "CPUExecutionProvider"
    log = "\n".join(report["log"]["info"])
    assert "DEVICE=cuda: CUDAExecutionProvider is not available" in "\n".join(report["log"]["warning"])
    assert "running student_s4_untrained on CPUExecutionProvider (DEVICE=cuda" in log
    segment_cnn(crop, str(tmp_path / "engine.tif"), MODEL, segments=4)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    assert (tmp_path / "cli.qml").read_text() == (tmp_path / "engine.qml").read_text()  # the same style sidecar


def test_run_reports_a_bad_model_and_writes_nothing(tmp_path, crop):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "bad.tif"
    completed = qgis_process("run", "segmenter:cnn", "--", f"INPUT={crop}", f"MODEL_PATH={bad}", f"OUTPUT={out}",
                             check=False)
    assert completed.returncode != 0
    assert "is not a readable ONNX model" in completed.stdout + completed.stderr
    assert not out.exists()


WITHOUT_ONNXRUNTIME = """
import sys
sys.modules["onnxruntime"] = None  # as if it were not installed
from qgis.core import QgsApplication, QgsProcessingException
app = QgsApplication([], False)
app.initQgis()
sys.path.append(QgsApplication.pkgDataPath() + "/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
import map_segmenter
plugin = map_segmenter.classFactory(None)
plugin.initProcessing()
registry = QgsApplication.processingRegistry()
print("ALGORITHMS", sorted(a.id() for a in registry.providerById("segmenter").algorithms()))
print("TORCH", "torch" in sys.modules)
import processing
result = processing.run("segmenter:kmeans", {{"INPUT": {crop!r}, "SEGMENTS": 3, "OUTPUT": {kmeans!r}}})
print("KMEANS", result["SEGMENT_COUNT"])
try:
    processing.run("segmenter:cnn", {{"INPUT": {crop!r}, "OUTPUT": {cnn!r}}})
except QgsProcessingException as error:
    print("CNN", str(error).replace(chr(10), " "))
plugin.unload()
app.exitQgis()
"""


def test_without_onnxruntime_the_provider_loads_kmeans_runs_and_cnn_says_how_to_install(tmp_path, crop):
    code = WITHOUT_ONNXRUNTIME.format(crop=crop, kmeans=str(tmp_path / "k.tif"),
                                      cnn=str(tmp_path / "c.tif"))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(ROOT / ".build" / "qgis-profile"))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines() if line[:1].isupper() and " " in line)
    assert "segmenter:cnn" in lines.get("ALGORITHMS", ""), completed.stdout + completed.stderr
    assert "segmenter:kmeans" in lines["ALGORITHMS"]
    assert lines["TORCH"] == "False"
    assert lines["KMEANS"] == "3" and (tmp_path / "k.tif").exists()
    assert f"Install it with:     {sys.executable} -m pip install onnxruntime then restart QGIS" in lines["CNN"]
    assert not (tmp_path / "c.tif").exists()


def test_loading_the_plugin_imports_neither_onnxruntime_nor_torch():
    code = (
        "import sys; from qgis.core import QgsApplication; "
        "app = QgsApplication([], False); app.initQgis(); import map_segmenter; "
        "plugin = map_segmenter.classFactory(None); plugin.initProcessing(); "
        "provider = QgsApplication.processingRegistry().providerById('segmenter'); "
        "print(sorted(a.id() for a in provider.algorithms()), 'onnxruntime' in sys.modules, 'torch' in sys.modules)"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    last = completed.stdout.strip().splitlines()[-1]
    assert "'segmenter:cnn'" in last and last.endswith("False False"), completed.stdout + completed.stderr
