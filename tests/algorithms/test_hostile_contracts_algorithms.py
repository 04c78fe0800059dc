"""Hostile contracts through ``processing.run`` (every algorithm that takes them, and the shipped models): a
SCHEDULER that accepts and does not speak Dask, a damaged REFERENCE, a model whose network disagrees with its
metadata, SEGMENTS beside a REFERENCE of another K. Each: the exact message, no traceback, every file unchanged
(sha256), nothing left behind."""

import shutil

import pytest
from hostile import BEHAVIOURS, HostileServer, Untouched, connect_message, no_traceback
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from map_segmenter.engine.backends import distributed
from map_segmenter.engine.rasters.labels import REFERENCE_ADVICE
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import KAMPALA, ROOT, crop_real

MODEL_FILE = str(ROOT / "tests" / "models" / "student_s4_untrained.onnx")
SHIPPED_MODELS = ("segmenter:segment_smooth_refine_render", "segmenter:segment_smooth_refine_render_statistics")


class Messages(QgsProcessingFeedback):
    """What the user sees of a run: errors, warnings and the log."""

    def __init__(self):
        super().__init__()
        self.texts = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 - QGIS API
        self.texts.append(error)

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.texts.append(warning)

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.texts.append(info)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_algorithms")
    crop = crop_real(KAMPALA, folder / "crop.tif", 96, 80, 1201, 803)
    segment_kmeans(crop, str(folder / "labels.tif"), segments=4, features_path=str(folder / "features.tif"))
    return folder


def refused(processing_run, folder, algorithm, parameters, message, allowed=()):
    untouched = Untouched(folder)
    feedback = Messages()
    with pytest.raises(QgsProcessingException) as raised:
        processing_run(algorithm, parameters, feedback=feedback)
    text = "\n".join([str(raised.value), *feedback.texts])
    no_traceback(text)
    assert message in text, text
    untouched.check(allowed)
    return text


def parameters(algorithm, scene, out):
    if algorithm == "segmenter:kmeans":
        return {"INPUT": str(scene / "crop.tif"), "SEGMENTS": 4, "OUTPUT": str(out)}
    if algorithm == "segmenter:cnn":
        return {"INPUT": str(scene / "crop.tif"), "MODEL_PATH": MODEL_FILE, "SEGMENTS": 4, "OUTPUT": str(out)}
    if algorithm == "segmenter:blur":
        return {"INPUT": str(scene / "labels.tif"), "OUTPUT": str(out)}
    if algorithm == "segmenter:knn_refine":
        return {"LABELS": str(scene / "labels.tif"), "FEATURES": str(scene / "features.tif"), "OUTPUT": str(out)}
    extra = {"statistics:Statistics": str(out.with_suffix(".csv"))} if algorithm == SHIPPED_MODELS[1] else {}
    return {"INPUT": str(scene / "crop.tif"), "SEGMENTS": 4, "render:Segments": str(out), **extra}


@pytest.mark.parametrize("algorithm", ["segmenter:kmeans", "segmenter:cnn", "segmenter:blur", "segmenter:knn_refine",
                                       *SHIPPED_MODELS])
@pytest.mark.parametrize("behaviour", ["garbage", "closes"])
def test_a_scheduler_that_does_not_speak_dask(processing_run, scene, monkeypatch, algorithm, behaviour):
    if algorithm == "segmenter:cnn":
        pytest.importorskip("onnxruntime")
    monkeypatch.setattr(distributed, "TIMEOUT", 2.0)
    with HostileServer(behaviour) as server:
        refused(processing_run, scene, algorithm,
                {**parameters(algorithm, scene, scene / "out.tif"), "SCHEDULER": server.address},
                connect_message(server.address, 2, BEHAVIOURS[behaviour]))


def test_a_silent_scheduler_through_the_shipped_model(processing_run, scene, monkeypatch):
    monkeypatch.setattr(distributed, "TIMEOUT", 2.0)
    with HostileServer("silent") as server:
        refused(processing_run, scene, SHIPPED_MODELS[0],
                {**parameters(SHIPPED_MODELS[0], scene, scene / "out.tif"), "SCHEDULER": server.address},
                connect_message(server.address, 2, "no answer"))


def damaged_reference(scene, folder, item, text):
    path = folder / "reference.tif"
    shutil.copy(scene / "labels.tif", path)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    metadata = dataset.GetMetadata()
    if text is None:
        metadata.pop(f"SEGMENTER_{item}")
    else:
        metadata[f"SEGMENTER_{item}"] = text
    dataset.SetMetadata(metadata)
    dataset = None
    (folder / "reference.tif.aux.xml").unlink(missing_ok=True)
    return path


REFERENCES = {
    "k missing": ("K", None, "has no SEGMENTER_K item (its number of segments). "),
    "centres nan": ("CENTRES", "[[NaN, 1, 2, 3, 4, 5]]", "has a damaged SEGMENTER_CENTRES item: 1 of its 6 values are "
                                                         "not finite numbers (NaN or infinity). "),
    "centres garbage": ("CENTRES", "[[1, 2", "has a damaged SEGMENTER_CENTRES item: it is not a table of numbers "
                                            "(one row of numbers per segment). "),
    "k against centres": ("K", "7", "has a damaged SEGMENTER_CENTRES item: it holds 4 centres but SEGMENTER_K says 7 "
                                    "segments. "),
}


@pytest.mark.parametrize("algorithm", ["segmenter:kmeans", "segmenter:cnn"])
@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_a_damaged_reference(processing_run, scene, tmp_path, algorithm, case):
    if algorithm == "segmenter:cnn":
        pytest.importorskip("onnxruntime")
    item, text, message = REFERENCES[case]
    reference = damaged_reference(scene, tmp_path, item, text)
    refused(processing_run, tmp_path, algorithm,
            {**parameters(algorithm, scene, tmp_path / "out.tif"), "REFERENCE": str(reference)},
            f"The reference '{reference}' {message}{REFERENCE_ADVICE}")


def test_segments_beside_a_reference_of_another_k(processing_run, scene, tmp_path):
    feedback = Messages()
    result = processing_run("segmenter:kmeans", {**parameters("segmenter:kmeans", scene, tmp_path / "out.tif"),
                                                 "SEGMENTS": 7, "REFERENCE": str(scene / "labels.tif")},
                            feedback=feedback)
    assert "REFERENCE has K = 4 segments; SEGMENTS = 7 is ignored, the run uses 4." in feedback.texts
    assert result["SEGMENT_COUNT"] <= 4


def test_a_model_whose_real_stride_is_not_its_declared_one(processing_run, scene, tmp_path):
    pytest.importorskip("onnxruntime")
    from onnx_builders import shipped_copy

    (tmp_path / "models").mkdir()
    model = shipped_copy(tmp_path / "models" / "stride8.onnx", stride=8)
    refused(processing_run, tmp_path, "segmenter:cnn",
            {**parameters("segmenter:cnn", scene, tmp_path / "out.tif"), "MODEL_PATH": model},
            "The model 'stride8.onnx' does not compute what its metadata declare: its metadata declare stride 8, but "
            "the network computes a 16 x 16 grid from a 64 x 64 px probe tile, not 8 x 8: its real stride is 4. Fix "
            "the model's metadata (training/export_backbone.py writes them from the network) or choose another "
            "MODEL.")
