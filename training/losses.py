"""Training losses on stride-4 embeddings ``emb`` [N, C, h, w]. Each returns a scalar tensor with a gradient
to the embeddings (and so to the student). Terms that compare distances are invariant to the embeddings'
scale, so no term can be lowered by merely shrinking or growing them."""

import math

import torch
import torch.nn.functional as F  # noqa: N812

EPS = 1e-6


def _cells(emb):
    """[N, h*w, C]"""
    return emb.flatten(2).transpose(1, 2)


def _entropy(p, dim):
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


def soft_kmeans_shaping(emb, k=6, temperature=0.3, iters=3, generator=None):
    """Clustering shaping on soft K-Means assignments, per image: the mean pixel entropy of the assignments
    goes down (confident, compact clusters) and the entropy of their marginal goes up (all clusters used).

    Centres: ``iters`` hard Lloyd steps (no gradient) from ``k`` seeded random cells. Assignments:
    softmax(-d^2 / (temperature * mean d^2)), with the gradient flowing through the embeddings. Returns
    mean pixel entropy + (1 - marginal entropy), both divided by log k: a value in [0, 2].
    """
    total = 0.0
    for cells in _cells(emb):
        with torch.no_grad():
            pick = torch.randperm(cells.shape[0], generator=generator)[:k]
            centres = cells[pick].clone()
            for _ in range(iters):
                nearest = torch.cdist(cells, centres).argmin(dim=1)
                for j in range(len(centres)):
                    members = nearest == j
                    if members.any():
                        centres[j] = cells[members].mean(dim=0)
        d2 = torch.cdist(cells, centres).pow(2)
        p = torch.softmax(-d2 / (temperature * d2.mean() + EPS), dim=1)
        scale = math.log(len(centres))
        total = total + _entropy(p, 1).mean() / scale + 1 - _entropy(p.mean(dim=0), 0) / scale
    return total / emb.shape[0]


def _pair_scale(emb):
    """Mean squared distance between the embeddings of random cell pairs of each image (with gradient)."""
    cells = _cells(emb)
    shuffled = cells[:, torch.randperm(cells.shape[1], generator=torch.Generator().manual_seed(0))]
    return (cells - shuffled).pow(2).sum(-1).mean().clamp_min(EPS)


def slic_boundary(emb, slic, margin=1.0):
    """SLIC boundary prior. ``slic`` [N, h, w] superpixel ids on the embedding grid. Neighbouring cells of one
    superpixel are pulled together; neighbours across a superpixel edge are pushed apart until their squared
    distance reaches ``margin`` x the mean distance of random pairs (hinge)."""
    scale = _pair_scale(emb)
    inside, across = [], []
    for dim in (2, 3):
        a, b = emb.narrow(dim, 1, emb.shape[dim] - 1), emb.narrow(dim, 0, emb.shape[dim] - 1)
        d = (a - b).pow(2).sum(1) / scale
        same = slic.narrow(dim - 1, 1, slic.shape[dim - 1] - 1) == slic.narrow(dim - 1, 0, slic.shape[dim - 1] - 1)
        inside.append(d[same])
        across.append(F.relu(margin - d[~same]))
    inside, across = torch.cat(inside), torch.cat(across)
    pull = inside.mean() if inside.numel() else emb.sum() * 0
    push = across.mean() if across.numel() else emb.sum() * 0
    return pull + push


def edge_aware_tv(emb, rgb01, sigma=0.1):
    """Edge-aware total variation: |differences| of neighbouring embeddings weighted by exp(-|image gradient| /
    sigma) (image averaged over each cell), divided by the embeddings' spread. The gradient flows to the
    embeddings (the predecessor detached it, so this term never trained anything)."""
    stride = rgb01.shape[-1] // emb.shape[-1]
    image = F.avg_pool2d(rgb01, stride)
    spread = emb.std(dim=(0, 2, 3)).mean().clamp_min(EPS)
    total = 0.0
    for dim in (2, 3):
        n = emb.shape[dim] - 1
        de = (emb.narrow(dim, 1, n) - emb.narrow(dim, 0, n)).abs().mean(1)
        di = (image.narrow(dim, 1, n) - image.narrow(dim, 0, n)).abs().mean(1)
        total = total + (torch.exp(-di / sigma) * de).mean()
    return total / (2 * spread)


def consistency(emb_a, emb_b, geometries_a, geometries_b):
    """Two views of the same patches, each under its own geometry (augment.Geometry per sample): the geometry is
    undone on each view's embeddings before comparing, so aligned pairs give exactly zero. Mean squared
    difference divided by the embeddings' variance."""
    a = torch.stack([g.undo(e) for g, e in zip(geometries_a, emb_a)])
    b = torch.stack([g.undo(e) for g, e in zip(geometries_b, emb_b)])
    variance = 0.5 * (a.var(dim=(0, 2, 3)).mean() + b.var(dim=(0, 2, 3)).mean())
    return (a - b).pow(2).mean() / variance.clamp_min(EPS)


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _gradients(grey):
    kernel = torch.stack([_SOBEL, _SOBEL.t()]).unsqueeze(1).to(grey)
    return F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel)


def reconstruction(decoded, rgb01):
    """Training-only decoder output [N, 3, h, w] against the low-pass image (cell means): L1 on the colours plus
    L1 on their Sobel gradients (gradient consistency)."""
    stride = rgb01.shape[-1] // decoded.shape[-1]
    target = F.avg_pool2d(rgb01, stride)
    colour = (decoded - target).abs().mean()
    edges = (_gradients(decoded.mean(1, keepdim=True)) - _gradients(target.mean(1, keepdim=True))).abs().mean()
    return colour + edges


def descriptor_distillation(predicted, targets):
    """Mean squared error between the regressed and the engine's standardised colour + texture descriptors."""
    return F.mse_loss(predicted, targets)


def pseudo_label(logits, labels):
    """Cross-entropy against pseudo-labels (global K-Means clusters of the engine's descriptors)."""
    return F.cross_entropy(logits, labels)


def class_labels(logits, classes):
    """Cross-entropy against class ids (-1 = no label) through a training-only linear head. SUPERVISED: only for
    experiments with labelled imagery (loss.labels > 0); zero with a gradient when no cell is labelled."""
    if not (classes >= 0).any():
        return logits.sum() * 0
    return F.cross_entropy(logits, classes, ignore_index=-1)


def teacher_distillation(projected, teacher_features):
    """1 - cosine similarity between projected student embeddings (average-pooled to the teacher's grid) and
    the teacher's features."""
    pooled = F.adaptive_avg_pool2d(projected, teacher_features.shape[-2:])
    return (1 - F.cosine_similarity(pooled, teacher_features, dim=1)).mean()


class RunningNormaliser:
    """Divides each term by a running average of its own (detached) value, kept per patch size, so terms of
    different magnitudes and patch sizes weigh in as set by their weights."""

    def __init__(self, decay=0.95):
        self.decay = decay
        self.averages = {}

    def __call__(self, name, size, value):
        key = f"{name}@{size}"
        current = float(value.detach())
        previous = self.averages.get(key)
        self.averages[key] = current if previous is None else self.decay * previous + (1 - self.decay) * current
        return value / max(self.averages[key], EPS)

    def state_dict(self):
        return dict(self.averages)

    def load_state_dict(self, state):
        self.averages = dict(state)
