"""How far can per-image K-Means (K = 5) go on other per-cell features than segmenter:kmeans's descriptor? The
study behind the model card's "what was tried": each variant replaces the stride-4 features that K-Means
clusters, on the same Dubai images, scored like training.quick_eval (Hungarian mIoU, mean over images).

    python -m training.probe_features --tiles tile6,tile8             # every family
    python -m training.probe_features --tiles all --families texture

Families: ``smoothing`` (Gaussian-blurred descriptors, SLIC-pooled descriptors, SLIC majority vote of the
clusters), ``texture`` (multi-scale mean/std, gradient energy, structure-tensor coherence, re-weighted L or
texture), ``teacher`` (ImageNet EfficientNet-Lite0 stride-8/16 features, PCA to 8 and scaled against the
descriptor, appended: needs the teacher package), ``prototypes`` (descriptors snapped to the nearest of G
dataset-wide K-Means centres fitted on the Dubai images outside tile6 and tile8: a learned global prior in its
simplest form). ``base`` is the descriptor segmenter:kmeans clusters.
"""

import argparse
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

from map_segmenter.evaluation.dubai import pairs
from map_segmenter.evaluation.scoring import score_grid

from .datasets.targets import descriptors, slic_labels
from .quick_eval import segment

FAMILIES = ("smoothing", "texture", "prototypes", "teacher")
HOLDOUT = ("tile6", "tile8")


def _to_grid(plane, h, w, stride=4):
    """Mean of each stride x stride cell of a full-resolution plane (edge-padded to the grid)."""
    plane = np.pad(plane, ((0, max(0, h * stride - plane.shape[0])), (0, max(0, w * stride - plane.shape[1]))),
                   mode="edge")[: h * stride, : w * stride]
    return plane.reshape(h, stride, w, stride).mean((1, 3))


def smoothing_variants(pixels, base):
    h, w, _ = base.shape
    out = {f"gauss{s:g}": np.stack([ndimage.gaussian_filter(base[..., c], s) for c in range(base.shape[-1])], -1)
           for s in (1.0, 2.0)}
    clusters = segment(base)
    for cell in (16, 32):
        ids = slic_labels(pixels, cell=cell)[2::4, 2::4]
        ids = np.pad(ids, ((0, h - ids.shape[0]), (0, w - ids.shape[1])), mode="edge").ravel()
        count = np.maximum(np.bincount(ids), 1)[:, None]
        flat = base.reshape(-1, base.shape[-1])
        pooled = np.stack([np.bincount(ids, flat[:, c], len(count)) for c in range(flat.shape[1])], 1) / count
        out[f"slicpool{cell}"] = pooled[ids].reshape(h, w, -1)
        votes = np.zeros((len(count), 5))
        np.add.at(votes, (ids, clusters.ravel()), 1)
        out[f"slicvote{cell}"] = votes.argmax(1)[ids].reshape(h, w)  # already cluster ids
    return out


def texture_variants(pixels, base):
    h, w, _ = base.shape
    wide = np.moveaxis(descriptors(pixels, (3,)), 0, -1)
    grey = pixels.astype(np.float32).mean(0)
    gx, gy = ndimage.sobel(grey, 1), ndimage.sobel(grey, 0)

    def cells(plane):  # block means with the 1-block ring, like the descriptor
        return ndimage.uniform_filter(_to_grid(plane, h, w), 3, mode="reflect")

    jxx, jyy, jxy = cells(gx * gx), cells(gy * gy), cells(gx * gy)
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-3)
    energy = cells(np.hypot(gx, gy)) * (100 / 255) * 0.25
    return {
        "std_ring3": np.concatenate([base, wide[..., 3:]], -1),
        "mean_ring3": np.concatenate([base, 0.5 * wide[..., :3]], -1),
        "gradient": np.concatenate([base, energy[..., None]], -1),
        "coherence": np.concatenate([base, 20 * coherence[..., None]], -1),
        "L_half": base * np.array([0.5, 1, 1, 1, 1, 1], np.float32),
        "texture_x1.5": base * np.array([1, 1, 1, 1.5, 1.5, 1.5], np.float32),
    }


class Prototypes:
    def __init__(self, counts=(5, 8, 12, 16, 24), per_image=4000):
        from map_segmenter.engine.segmentation import kmeans

        rng = np.random.default_rng(0)
        rows = []
        for image, _ in pairs():
            if image.stem.split("_")[0] not in HOLDOUT:
                flat = _descriptor(image).reshape(-1, 6)
                rows.append(flat[rng.permutation(len(flat))[:per_image]])
        sample = np.concatenate(rows)
        sample = sample[rng.permutation(len(sample))]
        self.kmeans = kmeans
        self.centres = {count: kmeans.fit(sample, count, seed=0) for count in counts}

    def __call__(self, pixels, base):
        flat = base.reshape(-1, base.shape[-1])
        return {f"prototypes{count}": centres[self.kmeans.assign(flat, centres)].astype(np.float32).reshape(base.shape)
                for count, centres in self.centres.items()}


def teacher_cells(teacher, pixels, h, w):
    """{8: ..., 16: ...}: the teacher's stride-8 and stride-16 features of a uint8 (3, H, W) image, bilinearly
    upsampled to the (h, w) stride-4 grid, channels last."""
    import torch

    from .models import normalise

    endpoints = teacher.endpoints(normalise(torch.from_numpy(pixels / np.float32(255))[None]))
    return {stride: torch.nn.functional.interpolate(endpoints[stride], size=(h, w), mode="bilinear",
                                                    align_corners=False)[0].permute(1, 2, 0).numpy()
            for stride in (8, 16)}


class TeacherFeatures:
    def __init__(self):
        from .teacher import load_teacher

        self.teacher = load_teacher("efficientnet-lite0")

    def __call__(self, pixels, base):
        h, w, _ = base.shape
        flat, out = base.reshape(h * w, -1), {}
        for stride, cells in teacher_cells(self.teacher, pixels, h, w).items():
            f = cells.reshape(h * w, -1)
            f = f - f.mean(0)
            sample = f[np.random.default_rng(0).permutation(len(f))[:5000]]
            projected = f @ np.linalg.svd(sample, full_matrices=False)[2][:8].T
            ratio = np.sqrt(flat.var(0).sum() / projected.var(0).sum())
            for weight in (0.5, 1.0):
                out[f"lite0_s{stride}_x{weight:g}"] = np.concatenate(
                    [flat, weight * ratio * projected], 1).reshape(h, w, -1).astype(np.float32)
        return out


def _pixels(image):
    return np.asarray(Image.open(image).convert("RGB")).transpose(2, 0, 1)


def _descriptor(image):
    return np.moveaxis(descriptors(_pixels(image), (1,)), 0, -1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", default="tile6,tile8", help="Dubai tiles (default the held-out tile6,tile8; all)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated: {', '.join(FAMILIES)}")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    makers = {"smoothing": smoothing_variants, "texture": texture_variants}
    if "teacher" in families:
        makers["teacher"] = TeacherFeatures()
    if "prototypes" in families:
        makers["prototypes"] = Prototypes()
    tiles = None if args.tiles == "all" else set(args.tiles.split(","))
    scores = {}
    for image, mask in pairs():
        if tiles is not None and image.stem.split("_")[0] not in tiles:
            continue
        pixels = _pixels(image)
        base = np.moveaxis(descriptors(pixels, (1,)), 0, -1)
        variants = {"base": base}
        for family in families:
            variants.update(makers[family](pixels, base))
        row = {name: score_grid(f if f.ndim == 2 else segment(f), mask)[0] for name, f in variants.items()}
        for name, value in row.items():
            scores.setdefault(name, []).append(value)
        print(image.stem, " ".join(f"{n} {100 * v:.1f}" for n, v in row.items()), file=sys.stderr, flush=True)
    base = np.mean(scores["base"])
    print(f"| features clustered (K = 5, {len(scores['base'])} images) | mIoU | vs base |\n|---|---:|---:|")
    for name, values in scores.items():
        print(f"| {name} | {100 * np.mean(values):.1f} | {100 * (np.mean(values) - base):+.1f} |")


if __name__ == "__main__":
    main()
