"""The student (shapes, stride, size invariance, parameter budget, receptive field) and every loss (finite,
gradients reach the student; consistency undoes the geometry)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0 (training only)")

from map_segmenter.training import losses  # noqa: E402
from map_segmenter.training.augment import Geometry  # noqa: E402
from map_segmenter.training.config import ModelConfig  # noqa: E402
from map_segmenter.training.models import Heads, Student, measured_reach, parameter_count, receptive_reach  # noqa: E402


def small_student(**kw):
    torch.manual_seed(0)
    return Student(stem=8, width=16, blocks=2, embed_dim=8, **kw)


@pytest.mark.parametrize("size", [(64, 96), (100, 148)])
def test_output_is_stride_4_embeddings(size):
    model = small_student().eval()
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 8, size[0] // 4, size[1] // 4)


def test_default_student_budget():
    model = Student()
    assert parameter_count(model) < 10_000_000
    # the shipped recipe (training/config.py defaults): the 42,454 parameters its model card states
    default = ModelConfig()
    shipped = Student(default.stem, default.width, default.blocks, default.embed_dim, default.dilation)
    assert parameter_count(shipped) == 42_454
    assert model(torch.zeros(1, 3, 64, 64)).shape[1] == model.config["embed_dim"]


def test_input_size_invariant_away_from_borders():
    """A crop's embeddings equal the full image's at cells farther than the receptive field from the crop edge:
    nothing pools over the whole input."""
    model = small_student(dilation=2).eval()
    reach, _ = receptive_reach(model)
    full = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        whole = model(full)
        crop = model(full[:, :, 32:128, 48:144])
    margin = -(-reach // 4)
    inner = crop[:, :, margin:-margin, margin:-margin]
    expected = whole[:, :, 8 + margin : 32 - margin, 12 + margin : 36 - margin]
    assert torch.allclose(inner, expected, atol=1e-5)
    assert not torch.allclose(crop[:, :, 0, 0], whole[:, :, 8, 12], atol=1e-5)  # border cells do differ


@pytest.mark.parametrize("dilation", [1, 2])
def test_receptive_reach_matches_gradient(dilation):
    model = small_student(dilation=dilation)
    assert receptive_reach(model)[0] == measured_reach(model)


def embeddings_and_inputs(n=2, size=64, seed=0):
    torch.manual_seed(seed)
    model = small_student().train()
    rgb = torch.rand(n, 3, size, size)
    return model, model(rgb), rgb


def assert_trains_student(model, value):
    assert torch.isfinite(value), value
    value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no gradient reached the student"
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_clustering_shaping():
    model, emb, _ = embeddings_and_inputs()
    value = losses.soft_kmeans_shaping(emb, k=4, generator=torch.Generator().manual_seed(0))
    assert 0 <= float(value.detach()) <= 2
    assert_trains_student(model, value)


def test_clustering_shaping_prefers_separated_clusters():
    torch.manual_seed(0)
    grid = torch.zeros(1, 4, 8, 8)
    grid[:, :, :, 4:] = 5.0
    separated = grid + 0.01 * torch.randn_like(grid)
    noise = torch.randn(1, 4, 8, 8)
    g = torch.Generator().manual_seed(1)
    assert float(losses.soft_kmeans_shaping(separated, k=2, generator=g)) < float(
        losses.soft_kmeans_shaping(noise, k=2, generator=g))


def test_slic_boundary_prior():
    model, emb, _ = embeddings_and_inputs()
    slic = (torch.arange(16)[None, :] // 3 + 10 * (torch.arange(16)[:, None] // 3)).expand(2, 16, 16)
    value = losses.slic_boundary(emb, slic)
    assert_trains_student(model, value)


def test_edge_aware_tv_has_gradient():
    """The predecessor detached this term; here it must move the student."""
    model, emb, rgb = embeddings_and_inputs()
    value = losses.edge_aware_tv(emb, rgb)
    assert value.requires_grad
    assert_trains_student(model, value)


def test_edge_aware_tv_spares_image_edges():
    emb = torch.zeros(1, 2, 8, 8)
    emb[:, :, :, 4:] = 1.0
    flat = torch.full((1, 3, 32, 32), 0.5)
    edge = flat.clone()
    edge[:, :, :, 16:] = 1.0
    assert float(losses.edge_aware_tv(emb, edge)) < 0.1 * float(losses.edge_aware_tv(emb, flat))


def test_reconstruction_through_decoder():
    model, emb, rgb = embeddings_and_inputs()
    heads = Heads(8, 18, 5)
    assert_trains_student(model, losses.reconstruction(heads.decoder(emb), rgb))


def test_distillation_and_pseudo_labels():
    model, emb, _ = embeddings_and_inputs()
    heads = Heads(8, 18, 5)
    targets = torch.randn(2, 18, 16, 16)
    labels = torch.randint(0, 5, (2, 16, 16))
    value = losses.descriptor_distillation(heads.distill(emb), targets) + losses.pseudo_label(heads.pseudo(emb), labels)
    assert_trains_student(model, value)


def test_supervised_class_term_and_its_unlabelled_case():
    model, emb, _ = embeddings_and_inputs()
    heads = Heads(8, 6, 5)
    classes = torch.full((2, 16, 16), -1)
    classes[:, :8] = 2
    assert_trains_student(model, losses.class_labels(heads.classes(emb), classes))
    model, emb, _ = embeddings_and_inputs()
    none = losses.class_labels(heads.classes(emb), torch.full((2, 16, 16), -1))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_teacher_distillation_loss():
    model, emb, _ = embeddings_and_inputs()
    heads = Heads(8, 18, 5, teacher_dim=6)
    assert_trains_student(model, losses.teacher_distillation(heads.teacher(emb), torch.randn(2, 6, 4, 4)))


ALL = [Geometry(r, f) for r in range(4) for f in (False, True)]


@pytest.mark.parametrize("a", ALL)
def test_consistency_of_aligned_views_is_zero(a):
    """Two views of one embedding map under different geometries: undone before comparing, so zero."""
    canonical = torch.randn(1, 6, 8, 8)
    b = Geometry((a.rot + 1) % 4, not a.flip)
    value = losses.consistency(a.apply(canonical), b.apply(canonical), [a], [b])
    assert float(value) == 0.0
    if a != Geometry():
        assert float(losses.consistency(a.apply(canonical), canonical, [Geometry()], [Geometry()])) > 0.1


def test_consistency_trains_student():
    torch.manual_seed(0)
    model = small_student().train()
    rgb = torch.rand(2, 3, 64, 64)
    geos_a, geos_b = [Geometry(1, False), Geometry(0, True)], [Geometry(2, True), Geometry(3, False)]
    view_a = torch.stack([g.apply(x) for g, x in zip(geos_a, rgb)])
    view_b = torch.stack([g.apply(x) for g, x in zip(geos_b, rgb)])
    emb = model(torch.cat([view_a, view_b]))
    assert_trains_student(model, losses.consistency(emb[:2], emb[2:], geos_a, geos_b))


def test_running_normaliser_per_patch_size():
    norm = losses.RunningNormaliser(decay=0.5)
    assert float(norm("tv", 128, torch.tensor(4.0))) == pytest.approx(1.0)
    assert float(norm("tv", 256, torch.tensor(10.0))) == pytest.approx(1.0)  # own average per size
    assert float(norm("tv", 128, torch.tensor(8.0))) == pytest.approx(8.0 / 6.0)
    assert np.isclose(norm.state_dict()["tv@128"], 6.0)
