"""Training batches: two augmented views of each patch with aligned SLIC labels, descriptor targets and
pseudo-labels. Everything random comes from one numpy Generator, so a seed fixes the whole batch."""

from dataclasses import dataclass

import numpy as np
import torch

from .augment import photometric, random_geometry
from .datasets.targets import STRIDE, descriptor_targets, slic_labels


@dataclass
class Batch:
    size: int
    rgb: list  # two float tensors [N, 3, S, S] in 0..1 (augmented views)
    slic: list  # two long tensors [N, S/4, S/4] of superpixel ids on the embedding grid
    targets: list  # two float tensors [N, T, S/4, S/4] of standardised descriptors
    pseudo: list  # two long tensors [N, S/4, S/4] of pseudo-label ids (or None)
    classes: list  # two long tensors [N, S/4, S/4] of class ids, -1 = none (only with loss.labels; else None)
    geometry: list  # two lists of N augment.Geometry
    names: list


def make_source(config):
    """The patch source named by ``config.data.source``."""
    data = config.data
    if data.source == "shards":
        from .datasets.shards import ShardSource

        return ShardSource(data.shards, "train", classes=config.loss.labels > 0, holdout=tuple(data.holdout))
    if data.source == "rasters":
        from .datasets.rasters import RandomWindows, default_rasters

        return RandomWindows(list(data.rasters) or default_rasters(data.holdout))
    if data.source == "synthetic":
        from .datasets.synthetic import SyntheticSource

        return SyntheticSource()
    raise ValueError(f"data.source must be shards, rasters or synthetic; got {data.source!r}")


def grid_slic(slic):
    """Superpixel id of each stride x stride cell (its centre pixel)."""
    return slic[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE]


PSEUDO_CHANNELS = slice(0, 6)  # the first context's descriptor (default context 1: what segmenter:kmeans clusters)


def assign_codebook(targets, codebook):
    """Nearest codebook row for each cell of ``targets`` (T, h, w) -> (h, w) int64."""
    if codebook is None:
        return None
    flat = targets[PSEUDO_CHANNELS].reshape(codebook.shape[1], -1).T
    d = (flat * flat).sum(1)[:, None] - 2 * flat @ codebook.T + (codebook * codebook).sum(1)[None]
    return d.argmin(1).reshape(targets.shape[1:]).astype(np.int64)


def make_batch(source, rng, size, batch_size, config, codebook=None):
    aug, data = config.aug, config.data
    views = [dict(rgb=[], slic=[], targets=[], pseudo=[], geometry=[], classes=[]) for _ in range(2)]
    names = []
    with_classes = False
    for _ in range(batch_size):
        drawn = source.sample(rng, size)
        classes = None
        if len(drawn) == 4:
            pixels, slic, name, classes = drawn
            classes, with_classes = grid_slic(classes), True
        elif len(drawn) == 3:
            pixels, slic, name = drawn
        else:
            (pixels, name), slic = drawn, None
        if slic is None:
            slic = slic_labels(pixels, data.slic_cell)
        targets = descriptor_targets(pixels, config.loss.distill_contexts, standardise=config.loss.distill_standardise)
        pseudo = assign_codebook(targets, codebook)
        cells = grid_slic(slic).astype(np.int64)
        names.append(name)
        for view in views:
            geometry = random_geometry(rng, aug.flips, aug.rot90)
            rgb = photometric(geometry.apply(pixels).astype(np.float32) / 255.0, rng, aug.brightness, aug.contrast,
                              aug.saturation, aug.noise)
            view["rgb"].append(rgb)
            view["slic"].append(geometry.apply(cells))
            view["targets"].append(geometry.apply(targets))
            view["pseudo"].append(geometry.apply(pseudo) if pseudo is not None else None)
            view["classes"].append(geometry.apply(classes) if classes is not None else None)
            view["geometry"].append(geometry)

    def stack(items, dtype):
        return torch.from_numpy(np.stack(items).astype(dtype))

    return Batch(
        size=size,
        rgb=[stack(v["rgb"], np.float32) for v in views],
        slic=[stack(v["slic"], np.int64) for v in views],
        targets=[stack(v["targets"], np.float32) for v in views],
        pseudo=[stack(v["pseudo"], np.int64) if codebook is not None else None for v in views],
        classes=[stack(v["classes"], np.int64) if with_classes else None for v in views],
        geometry=[v["geometry"] for v in views],
        names=names,
    )


def fit_codebook(source, k, rng, config, windows=48, size=128, per_window=400):
    """Global K-Means codebook (k, 6) of the first context's descriptors (as the targets are scaled) of
    ``windows`` random patches: the pseudo-label classes. Uses the engine's seeded K-Means."""
    from map_segmenter.engine.segmentation import kmeans

    rows = []
    for _ in range(windows):
        drawn = source.sample(rng, size)
        targets = descriptor_targets(drawn[0], config.loss.distill_contexts,
                                     standardise=config.loss.distill_standardise)
        flat = targets[PSEUDO_CHANNELS].reshape(6, -1).T
        rows.append(flat[rng.permutation(len(flat))[:per_window]])
    points = np.concatenate(rows)
    return kmeans.fit(points, k, seed=int(rng.integers(2**31))).astype(np.float32)
