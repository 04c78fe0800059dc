"""Augmentation alignment and seeding, shard determinism, SLIC shape and dtype, shard loading."""

import filecmp

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0 (training only)")

from map_segmenter.training.augment import Geometry, photometric, random_geometry  # noqa: E402
from map_segmenter.training.batches import make_batch  # noqa: E402
from map_segmenter.training.config import Config  # noqa: E402
from map_segmenter.training.datasets import build_shards  # noqa: E402
from map_segmenter.training.datasets.shards import ShardSource, read_index  # noqa: E402
from map_segmenter.training.datasets.synthetic import SyntheticSource  # noqa: E402
from map_segmenter.training.datasets.targets import descriptor_targets, slic_labels  # noqa: E402

from helpers import DUBAI_IMAGES, KAMPALA, crop_real  # noqa: E402

ALL = [Geometry(r, f) for r in range(4) for f in (False, True)]


@pytest.mark.parametrize("g", ALL)
def test_geometry_undo_inverts_apply(g):
    array = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    assert np.array_equal(g.undo(g.apply(array)), array)
    tensor = torch.from_numpy(array)
    assert torch.equal(g.undo(g.apply(tensor)), tensor)
    assert np.array_equal(g.apply(tensor).numpy(), g.apply(array))  # numpy and torch agree


def test_geometry_is_all_eight_distinct():
    array = np.arange(16).reshape(4, 4)
    assert len({g.apply(array).tobytes() for g in ALL}) == 8


@pytest.mark.parametrize("g", ALL)
def test_targets_follow_the_image_geometry(g):
    """Descriptors of the transformed image equal the transformed descriptors: targets stay aligned."""
    pixels = SyntheticSource().sample(np.random.default_rng(3), 64)[0]
    assert np.allclose(descriptor_targets(g.apply(pixels)), g.apply(descriptor_targets(pixels)), atol=1e-4)


def test_batch_views_are_aligned_and_seeded():
    config = Config()
    config.data.slic_cell = 8
    config.loss.distill_contexts = (1, 0, 3)
    source = SyntheticSource()
    batch = make_batch(source, np.random.default_rng(5), 64, 3, config, codebook=np.random.rand(4, 6).astype("f4"))
    again = make_batch(source, np.random.default_rng(5), 64, 3, config, codebook=np.random.rand(4, 6).astype("f4"))
    assert torch.equal(batch.rgb[0], again.rgb[0]) and torch.equal(batch.slic[1], again.slic[1])
    assert batch.rgb[0].shape == (3, 3, 64, 64) and batch.slic[0].shape == (3, 16, 16)
    assert batch.targets[0].shape == (3, 18, 16, 16) and batch.pseudo[0].shape == (3, 16, 16)
    for i in range(3):
        a, b = batch.geometry[0][i], batch.geometry[1][i]
        for field in ("slic", "targets", "pseudo"):
            va, vb = getattr(batch, field)[0][i], getattr(batch, field)[1][i]
            assert torch.equal(a.undo(va), b.undo(vb)), field  # geometry identical for image, SLIC, targets
    # photometric changes touch the image only: undoing the geometry leaves two different colourings
    a, b = batch.geometry[0][0], batch.geometry[1][0]
    assert not torch.allclose(a.undo(batch.rgb[0][0]), b.undo(batch.rgb[1][0]))


def test_photometric_is_seeded_and_in_range():
    rgb = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    one = photometric(rgb, np.random.default_rng(1))
    assert np.array_equal(one, photometric(rgb, np.random.default_rng(1)))
    assert one.min() >= 0 and one.max() <= 1 and not np.array_equal(one, rgb)
    assert random_geometry(np.random.default_rng(1), flips=False, rot90=False) == Geometry()


def test_slic_shape_and_dtype():
    pixels = SyntheticSource().sample(np.random.default_rng(0), 48)[0]
    labels = slic_labels(pixels, cell=8)
    assert labels.shape == (48, 48) and labels.dtype == np.uint16
    assert 5 <= len(np.unique(labels)) <= 100


@pytest.fixture(scope="module")
def small_rasters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rasters")
    return [crop_real(KAMPALA, folder / "kampala.tif", 150, 120, 1000, 700), str(DUBAI_IMAGES / "tile6_part001.jpg")]


def test_shards_are_deterministic(tmp_path, small_rasters):
    kwargs = dict(tile=64, slic_cell=10, per_shard=4, limit=0, log=lambda *a: None)
    first = build_shards.build(tmp_path / "a", small_rasters[:1], **kwargs)
    second = build_shards.build(tmp_path / "b", small_rasters[:1], **kwargs)
    assert first == second and len(first) == 6  # 3 x 2 windows of 64 px spread over 150 x 120
    assert (tmp_path / "a" / "index.jsonl").read_bytes() == (tmp_path / "b" / "index.jsonl").read_bytes()
    for entry in first:
        assert filecmp.cmp(tmp_path / "a" / entry["slic"], tmp_path / "b" / entry["slic"], shallow=False)
        slic = np.load(tmp_path / "a" / entry["slic"])
        assert slic.shape == (64, 64) and slic.dtype == np.uint16
    assert {e["split"] for e in first} == {"train"}
    assert [e["x"] for e in first[:3]] == [0, 43, 86] and [e["y"] for e in first[::3]] == [0, 56]


def test_shard_splits_and_loader(tmp_path, small_rasters):
    entries = build_shards.build(tmp_path, small_rasters, tile=64, slic_cell=10, limit=0, log=lambda *a: None)
    splits = {e["source"]: e["split"] for e in entries}
    assert splits["tile6_part001.jpg"] == "holdout"  # held-out Dubai tiles never reach train
    assert read_index(tmp_path) == entries
    source = ShardSource(tmp_path, "train")
    pixels, slic, name = source.sample(np.random.default_rng(0), 48)
    assert pixels.shape == (3, 48, 48) and pixels.dtype == np.uint8 and slic.shape == (48, 48)
    assert name.startswith("0000")
    with pytest.raises(ValueError, match="exceeds"):
        source.sample(np.random.default_rng(0), 128)
    labelled = ShardSource(tmp_path, "holdout", classes=True)
    pixels, slic, name, classes = labelled.sample(np.random.default_rng(0), 48)
    assert classes.shape == (48, 48) and classes.dtype == np.int64 and set(np.unique(classes)) <= set(range(-1, 5))
    assert (classes >= 0).mean() > 0.5  # the Dubai mask, aligned with the crop
    # a run that holds out more tiles than the shards did keeps them out of its training split
    more = build_shards.build(tmp_path / "more", [small_rasters[0], str(DUBAI_IMAGES / "tile1_part002.jpg")], tile=96,
                              slic_cell=10, limit=0, log=lambda *a: None)
    assert {e["source"] for e in more if e["split"] == "train"} == {"kampala.tif", "tile1_part002.jpg"}
    kept = {e["source"] for e in ShardSource(tmp_path / "more", "train", holdout=("tile1", "tile6")).entries}
    assert kept == {"kampala.tif"}
