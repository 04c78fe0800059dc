"""Contracts checked before any work, each with a message naming the file, the item and what to do: a REFERENCE
whose SEGMENTER_* metadata is damaged or incomplete (``labels.validate_reference``), an ONNX model whose network
computes another grid, other channels or non-finite values than its metadata declare (``onnx_runtime.check_output``
on a probe tile), a model whose embeddings are non-finite on some cells (``segmentation.embedding_cells``: masked,
counted), and SEGMENTS beside a REFERENCE of another K (a warning saying which K is used)."""

import json
import shutil

import numpy as np
import onnx
import pytest
from hostile import Untouched
from onnx import TensorProto, helper
from onnx_builders import VALID_METADATA, tiny_model
from osgeo import gdal

from map_segmenter.engine.rasters.labels import REFERENCE_ADVICE
from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import KAMPALA, crop_real


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A crop and a kmeans reference of it (K = 4)."""
    folder = tmp_path_factory.mktemp("hostile_contracts")
    crop = crop_real(KAMPALA, folder / "crop.tif", 96, 80, 1201, 803)
    segment_kmeans(crop, str(folder / "reference.tif"), segments=4)
    return folder


def damaged(made, tmp_path, **items):
    """A copy of the reference with SEGMENTER_<item> replaced by the given text (None: removed)."""
    path = tmp_path / "in" / "reference.tif"
    path.parent.mkdir(exist_ok=True)
    shutil.copy(made / "reference.tif", path)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    metadata = dataset.GetMetadata()
    for item, text in items.items():
        key = f"SEGMENTER_{item.upper()}"
        if text is None:
            metadata.pop(key, None)
        else:
            metadata[key] = text
    dataset.SetMetadata(metadata)
    dataset = None
    (path.parent / "reference.tif.aux.xml").unlink(missing_ok=True)
    return path


def centres_text(made, transform):
    dataset = gdal.Open(str(made / "reference.tif"))
    return json.dumps(transform(json.loads(dataset.GetMetadataItem("SEGMENTER_CENTRES"))))


def nan_centres(rows):
    rows[1][2] = float("nan")
    return rows


DAMAGES = {
    "centres missing": (dict(centres=None), "has no segment centres in its metadata (SEGMENTER_CENTRES). "
                                            + REFERENCE_ADVICE),
    "centres not json": (dict(centres="[[1.0, 2.0], [3.0"),
                         "has a damaged SEGMENTER_CENTRES item: it is not a table of numbers (one row of numbers per "
                         "segment). " + REFERENCE_ADVICE),
    "centres text": (dict(centres='[["a", "b"]]'), "has a damaged SEGMENTER_CENTRES item: it is not a table of "
                                                  "numbers (one row of numbers per segment). " + REFERENCE_ADVICE),
    "centres empty": (dict(centres="[]"), "has a damaged SEGMENTER_CENTRES item: it is not a table of numbers (one "
                                          "row of numbers per segment). " + REFERENCE_ADVICE),
    "centres ragged": (dict(centres=lambda m: centres_text(m, lambda rows: [rows[0][:3]] + rows[1:])),
                       "has a damaged SEGMENTER_CENTRES item: its rows have different lengths (3, 6). "
                       + REFERENCE_ADVICE),
    "centres nan": (dict(centres=lambda m: centres_text(m, nan_centres)),
                    "has a damaged SEGMENTER_CENTRES item: 1 of its 24 values are not finite numbers (NaN or "
                    "infinity). " + REFERENCE_ADVICE),
    "k missing": (dict(k=None), "has no SEGMENTER_K item (its number of segments). " + REFERENCE_ADVICE),
    "k text": (dict(k='"six"'), "has a damaged SEGMENTER_K item: 'six' is not a whole number of segments from 1 to "
                                "254. " + REFERENCE_ADVICE),
    "k fraction": (dict(k="3.5"), "has a damaged SEGMENTER_K item: 3.5 is not a whole number of segments from 1 "
                                  "to 254. " + REFERENCE_ADVICE),
    "k wrong count": (dict(k="5"), "has a damaged SEGMENTER_CENTRES item: it holds 4 centres but SEGMENTER_K says 5 "
                                   "segments. " + REFERENCE_ADVICE),
    "wrong dims": (dict(centres=lambda m: centres_text(m, lambda rows: [row[:5] for row in rows])),
                   "has a damaged SEGMENTER_FEATURES item: it names 6 features, but each centre has 5 values. "
                   + REFERENCE_ADVICE),
    "features text": (dict(features='"blocks"'), "has a damaged SEGMENTER_FEATURES item: it is not a set of named "
                                                  "values. " + REFERENCE_ADVICE),
    "stride text": (dict(features=lambda m: _features(m, stride="four")),
                    "has a damaged SEGMENTER_FEATURES item: its stride 'four' is not a whole number of pixels. "
                    + REFERENCE_ADVICE),
    "ranges reversed": (dict(features=lambda m: _features(m, input_ranges=[[200, 10]] * 3)),
                        "has a damaged SEGMENTER_FEATURES item: its input_ranges are not (low, high) pairs of finite "
                        "numbers, low below high. " + REFERENCE_ADVICE),
    "method number": (dict(method="7"), "has a damaged SEGMENTER_METHOD item: 7 is not the name of a method. "
                                        + REFERENCE_ADVICE),
}


def _features(made, **changes):
    features = json.loads(gdal.Open(str(made / "reference.tif")).GetMetadataItem("SEGMENTER_FEATURES"))
    return json.dumps({**features, **changes})


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_damaged_reference_is_refused_naming_the_item(made, tmp_path, case):
    items, message = DAMAGES[case]
    items = {key: value(made) if callable(value) else value for key, value in items.items()}
    reference = damaged(made, tmp_path, **items)
    untouched = Untouched(made, tmp_path)
    with pytest.raises(InputError) as error:
        segment_kmeans(str(made / "crop.tif"), str(tmp_path / "out.tif"), segments=4, reference_path=str(reference))
    assert str(error.value) == f"The reference '{reference}' {message}"
    untouched.check()


def test_segments_beside_a_reference_of_another_k_warns_which_k_is_used(made, tmp_path):
    warnings = []
    result = segment_kmeans(str(made / "crop.tif"), str(tmp_path / "out.tif"), segments=8,
                            reference_path=str(made / "reference.tif"), progress=Progress(warn=warnings.append))
    assert "REFERENCE has K = 4 segments; SEGMENTS = 8 is ignored, the run uses 4." in warnings
    assert len(result.centres) == 4
    quiet = []
    segment_kmeans(str(made / "crop.tif"), str(tmp_path / "same.tif"), segments=4,
                   reference_path=str(made / "reference.tif"), progress=Progress(warn=quiet.append))
    assert not [warning for warning in quiet if "REFERENCE has K" in warning]


# ------------------------------------------------------------------ models


def pooled_model(path, stride=4, declared=None, channels=3, tail=None, metadata=None):
    """A real model: ``stride`` x ``stride`` average pooling of the 3 channels (``channels`` > 3: the channels
    repeated), then ``tail`` ("sqrt": NaN below the mean; "log": -inf at the mean), declaring ``declared``."""
    nodes = [helper.make_node("AveragePool", ["rgb"], ["pooled"], kernel_shape=[stride, stride],
                              strides=[stride, stride])]
    last = "pooled"
    if channels != 3:
        nodes.append(helper.make_node("Concat", [last] * channels, ["wide"], axis=1))
        nodes.append(helper.make_node("Slice", ["wide", "starts", "ends", "axes"], ["sliced"]))
        last = "sliced"
    if tail:
        nodes.append(helper.make_node({"sqrt": "Sqrt", "log": "Log"}[tail], [last], ["tailed"]))
        last = "tailed"
    nodes.append(helper.make_node("Identity", [last], ["embeddings"]))
    initializers = [helper.make_tensor(name, TensorProto.INT64, [1], [value])
                    for name, value in (("starts", 0), ("ends", channels), ("axes", 1))] if channels != 3 else []
    graph = helper.make_graph(nodes, "pooled", [helper.make_tensor_value_info("rgb", TensorProto.FLOAT,
                                                                              ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    values = {**VALID_METADATA, "stride": declared or stride, **(metadata or {})}
    for key, value in values.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))
    return str(path)


MODELS = {
    "stride 4 declared 8": (dict(stride=4, declared=8),
                            "its metadata declare stride 8, but the network computes a 16 x 16 grid from a 64 x 64 px "
                            "probe tile, not 8 x 8: its real stride is 4"),
    "stride 8 declared 4": (dict(stride=8, declared=4),
                            "its metadata declare stride 4, but the network computes a 8 x 8 grid from a 64 x 64 px "
                            "probe tile, not 16 x 16: its real stride is 8"),
    "stride 4 declared 2": (dict(stride=4, declared=2),
                            "its metadata declare stride 2, but the network computes a 16 x 16 grid from a 64 x 64 px "
                            "probe tile, not 32 x 32: its real stride is 4"),
    "log of grey": (dict(tail="log"),
                    "768 of the 768 values it computes for a mid-grey probe tile are not finite (NaN or infinity)"),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_a_model_whose_network_disagrees_with_its_metadata_is_refused_before_any_work(made, tmp_path, case):
    pytest.importorskip("onnxruntime")
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

    arguments, problem = MODELS[case]
    (tmp_path / "models").mkdir()
    model = pooled_model(tmp_path / "models" / "odd.onnx", **arguments)
    untouched = Untouched(made, tmp_path)
    with pytest.raises(InputError) as error:
        segment_cnn(str(made / "crop.tif"), str(tmp_path / "out.tif"), model, segments=3)
    assert str(error.value) == (f"The model 'odd.onnx' does not compute what its metadata declare: {problem}. Fix "
                                f"the model's metadata (training/export_backbone.py writes them from the network) "
                                f"or choose another MODEL.")
    untouched.check()


def test_a_model_with_other_channels_than_embed_dim_is_refused(made, tmp_path):
    pytest.importorskip("onnxruntime")
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

    (tmp_path / "models").mkdir()
    model = pooled_model(tmp_path / "models" / "odd.onnx", channels=5)
    untouched = Untouched(made, tmp_path)
    with pytest.raises(InputError) as error:
        segment_cnn(str(made / "crop.tif"), str(tmp_path / "out.tif"), model, segments=3)
    assert str(error.value) == ("The model 'odd.onnx' does not follow the Map Segmenter model contract: output "
                                "'embeddings' has 5 channels but embed_dim is 3. Export it with "
                                "training/export_untrained.py or see engine/backends/model_contract.py.")
    untouched.check()


def test_the_tiny_contract_model_passes_the_probe(tmp_path):
    pytest.importorskip("onnxruntime")
    from map_segmenter.engine.backends.onnx_runtime import load_model

    assert load_model(tiny_model(tmp_path / "tiny.onnx")).info.stride == 4


def test_non_finite_embeddings_are_masked_and_counted(made, tmp_path):
    """sqrt of the normalised input: NaN on every cell darker than the model's mean grey. Those cells are left out
    as nodata with a warning naming their count; before, they went into the sample and the fit."""
    pytest.importorskip("onnxruntime")
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

    (tmp_path / "models").mkdir()
    model = pooled_model(tmp_path / "models" / "sqrt.onnx", tail="sqrt")
    warnings = []
    result = segment_cnn(str(made / "crop.tif"), str(tmp_path / "out.tif"), model, segments=3,
                         progress=Progress(warn=warnings.append))
    noted = [warning for warning in warnings if "non-finite embeddings" in warning]
    assert len(noted) == 1, warnings
    masked = int(noted[0].split(" for ")[1].split(" of ")[0])
    total = int(noted[0].split(" of ")[1].split(" cells")[0])
    assert noted[0] == (f"The model 'tiny' gave non-finite embeddings (NaN or infinity) for {masked} of {total} cells "
                        f"with valid pixels; they are left out as nodata (0 in OUTPUT).")
    assert 0 < masked < total == 24 * 20 and result.valid_cells == total - masked
    labels = gdal.Open(str(tmp_path / "out.tif")).ReadAsArray()
    assert np.count_nonzero(labels == 0) > 0 and np.count_nonzero(labels) > 0


def test_a_model_that_is_non_finite_everywhere_on_the_raster_is_refused(made, tmp_path):
    """sqrt of an input darker than the mean everywhere (input_mean 2.0): not one finite embedding (the probe's
    mid-grey tile, zeros after normalisation, gives zeros)."""
    pytest.importorskip("onnxruntime")
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

    (tmp_path / "models").mkdir()
    model = pooled_model(tmp_path / "models" / "dark.onnx", tail="sqrt",
                         metadata={"input_mean": [2.0, 2.0, 2.0]})
    untouched = Untouched(made, tmp_path)
    with pytest.raises(InputError) as error:
        segment_cnn(str(made / "crop.tif"), str(tmp_path / "out.tif"), model, segments=3)
    assert str(error.value).startswith("The model 'tiny' gave non-finite embeddings (NaN or infinity) for ")
    assert str(error.value).endswith(" cells with valid pixels: no cell is left to segment. The model is broken for "
                                     "this raster: choose another MODEL, or check the model's export.")
    untouched.check()
