"""A supervised ceiling for the unsupervised target: the best linear projection of per-cell features, fitted WITH
the Dubai class masks of the trained-on tiles (Fisher LDA to 4 dimensions), then per-image K-Means (K = 5) on the
held-out tiles, scored like training.quick_eval. Labels are used here only to bound what any head on these
features could reach; nothing trained or shipped uses them.

    python -m training.probe_linear_ceiling        # needs the teacher package for the Lite0 feature sets
"""

import numpy as np
from PIL import Image

from map_segmenter.evaluation.dubai import load_classes, pairs
from map_segmenter.evaluation.scoring import score_grid

from .datasets.targets import descriptors
from .probe_features import HOLDOUT, teacher_cells
from .quick_eval import segment
from .teacher import load_teacher

FEATURE_SETS = {
    "descriptor, LDA": ("descriptor",),
    "descriptor + Lite0 stride 16, LDA": ("descriptor", "s16"),
    "descriptor + Lite0 stride 8 + 16, LDA": ("descriptor", "s8", "s16"),
}


def cell_features(teacher, pixels):
    """{descriptor, s8, s16}: (h, w, C) arrays on the stride-4 grid (teacher maps bilinearly upsampled)."""
    base = np.moveaxis(descriptors(pixels, (1,)), 0, -1)
    cells = teacher_cells(teacher, pixels, *base.shape[:2])
    return {"descriptor": base, "s8": cells[8], "s16": cells[16]}


def cell_classes(mask, h, w):
    classes, ignore = load_classes(mask)
    pad = ((0, max(0, h * 4 - classes.shape[0])), (0, max(0, w * 4 - classes.shape[1])))
    return np.pad(classes, pad, mode="edge")[2::4, 2::4][:h, :w], np.pad(ignore, pad, mode="edge")[2::4, 2::4][:h, :w]


def fisher_lda(x, y, dims=4):
    """(mean, projection) maximising between-class over within-class scatter; unit variance per output."""
    mean = x.mean(0)
    within, between = np.zeros((x.shape[1],) * 2), np.zeros((x.shape[1],) * 2)
    for value in np.unique(y):
        members = x[y == value]
        centre = members.mean(0)
        within += (members - centre).T @ (members - centre)
        between += len(members) * np.outer(centre - mean, centre - mean)
    within += 1e-3 * np.trace(within) / len(within) * np.eye(len(within))
    values, vectors = np.linalg.eig(np.linalg.solve(within, between))
    projection = vectors[:, np.argsort(-values.real)[:dims]].real
    return mean, projection / ((x - mean) @ projection).std(0)


def main(per_image=3000):
    teacher = load_teacher("efficientnet-lite0")
    rng = np.random.default_rng(0)
    images = []
    for image, mask in pairs():
        pixels = np.asarray(Image.open(image).convert("RGB")).transpose(2, 0, 1)
        features = cell_features(teacher, pixels)
        h, w = features["descriptor"].shape[:2]
        images.append((image.stem.split("_")[0] in HOLDOUT, mask, features, *cell_classes(mask, h, w)))
    print("| features (LDA fitted with the masks of the other tiles) | held-out mIoU |\n|---|---:|")
    baseline = np.mean([score_grid(segment(f["descriptor"]), mask)[0] for held, mask, f, _, _ in images if held])
    print(f"| descriptor, no projection (= segmenter:kmeans) | {100 * baseline:.1f} |")
    for name, parts in FEATURE_SETS.items():
        rows, labels = [], []
        for held, _, features, classes, ignore in images:
            if not held:
                stacked = np.concatenate([features[p] for p in parts], -1).reshape(-1, sum(features[p].shape[-1]
                                                                                           for p in parts))
                keep = rng.permutation(np.flatnonzero(~ignore.ravel()))[:per_image]
                rows.append(stacked[keep])
                labels.append(classes.ravel()[keep])
        x = np.concatenate(rows)
        spread = x.std(0) + 1e-6
        mean, projection = fisher_lda(x / spread, np.concatenate(labels))
        scores = []
        for held, mask, features, _, _ in images:
            if held:
                stacked = np.concatenate([features[p] for p in parts], -1)
                projected = (stacked / spread - mean) @ projection
                scores.append(score_grid(segment(projected.astype(np.float32)), mask)[0])
        print(f"| {name} | {100 * np.mean(scores):.1f} |")


if __name__ == "__main__":
    main()
