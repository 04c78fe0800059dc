"""Measure label-free criteria for choosing K on the labelled Dubai tiles (issue 22): for every image and method,
the run's seeded sample (captured from the pipeline), the K_MAX fit's merge tree, and for every cut k in 2..12 the
criterion values and the scores of the centres refined from that cut (cells assigned on the FEATURES raster,
nearest, no refinement). Prints, per candidate, the chosen K's scores against K = 5 and the oracle K.

    python bench/autok_candidates.py [--methods kmeans,cnn] [--json bench/out/autok/candidates.json] [--analyse]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from eval_refine import scores
from osgeo import gdal

from map_segmenter.engine.segmentation import hierarchy, kmeans
from map_segmenter.engine.segmentation.cnn_segmentation import CnnEmbeddings
from map_segmenter.engine.segmentation.kmeans_segmentation import BlockDescriptors
from map_segmenter.evaluation.dubai import CLASS_COLOURS, load_classes, pairs

HERE = Path(__file__).resolve().parent
CACHE = HERE / "out" / "autok"
MODEL = HERE.parent / "onnx_models" / "student_s4_v1.onnx"
TOTALS = {}
gdal.UseExceptions()


def rect_scores(labels, classes, ignore, k, classes_n=None):
    """(strict, truth) mIoU of ids 1..k against classes 0..C-1 (Hungarian on the k x C matrix)."""
    return scores(labels, classes, ignore, k, classes_n or len(CLASS_COLOURS))[:2]


def cut_labels(assigned, merges, segments, k):
    """Labels 0..k-1 of points assigned to leaves 0..segments-1, after cutting the tree at k."""
    return hierarchy.cut(merges, segments, k)[assigned + 1].astype(np.int64) - 1


def _within_between(points, labels, k):
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, points.shape[1]))
    np.add.at(sums, labels, points)
    means = sums / np.maximum(counts, 1)[:, None]
    within = float(((points - means[labels]) ** 2).sum())
    between = float((counts[:, None] * (means - points.mean(axis=0)) ** 2).sum())
    return within, between, counts


def calinski_harabasz(points, labels, k):
    within, between, _ = _within_between(points, labels, k)
    n = len(points)
    return (between / max(k - 1, 1)) / (within / max(n - k, 1)) if within > 0 else np.inf


def bic(points, labels, k):
    """BIC of a spherical Gaussian mixture (one variance per cluster) with these hard labels; higher is better."""
    n, dims = points.shape
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, dims))
    np.add.at(sums, labels, points)
    means = sums / np.maximum(counts, 1)[:, None]
    squared = ((points - means[labels]) ** 2).sum(axis=1)
    variance = np.bincount(labels, squared, minlength=k) / np.maximum(counts * dims, 1)
    variance = np.maximum(variance, 1e-12)
    used = counts > 0
    log_likelihood = float((counts[used] * np.log(counts[used] / n)).sum()
                           - 0.5 * (counts[used] * dims * (np.log(2 * np.pi * variance[used]) + 1)).sum())
    parameters = k * (dims + 1) + k - 1
    return log_likelihood - 0.5 * parameters * np.log(n)


def silhouette(points, labels, k, most=2000):
    """Mean silhouette on the first ``most`` points (a random subset: the sample comes in random order)."""
    points, labels = points[:most], labels[:most]
    squared = (points * points).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * points @ points.T, 0))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((len(points), k))
    for cluster in range(k):
        sums[:, cluster] = distances[:, labels == cluster].sum(axis=1)
    own = counts[labels]
    a = sums[np.arange(len(points)), labels] / np.maximum(own - 1, 1)
    others = sums / np.maximum(counts, 1)[None, :]
    others[np.arange(len(points)), labels] = np.inf
    others[:, counts == 0] = np.inf
    b = others.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


CRITERIA = {"calinski_harabasz": calinski_harabasz, "bic": bic, "silhouette": silhouette}  # argmax


def criterion_values(points, centres, merges, k_min, k_max, criterion):
    """{k: criterion value} of the tree's cuts of ``centres`` (fitted on ``points``) for k in k_min..k_max."""
    assigned = kmeans.assign(points, centres).astype(np.int64)
    score = CRITERIA[criterion]
    return {k: float(score(points, cut_labels(assigned, merges, len(centres), k), k))
            for k in range(k_min, min(k_max, len(centres)) + 1)}


def captured(method, image, name):
    """(sample (n, C) float64 of the clustered vectors, features path, stride)."""
    npz, features = CACHE / f"{name}_{method}_sample.npz", CACHE / f"{name}_{method}_features.tif"
    if npz.exists() and features.exists():
        data = np.load(npz)
        return data["sample"], str(features), int(data["stride"])
    store = {}
    cls = BlockDescriptors if method == "kmeans" else CnnEmbeddings
    original = cls.fit

    def spy(self, sample, segments, seed, check, start=None):
        store["sample"] = np.asarray(sample)
        store["stride"] = self.stride
        return original(self, sample, segments, seed, check, start)

    cls.fit = spy
    try:
        out = str(CACHE / "scratch.tif")
        if method == "kmeans":
            from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
            segment_kmeans(str(image), out, segments=12, features_path=str(features))
        else:
            from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
            segment_cnn(str(image), out, str(MODEL), segments=12, features_path=str(features))
    finally:
        cls.fit = original
    sample = store["sample"] if method == "kmeans" else store["sample"][:, :-1]
    np.savez(npz, sample=sample, stride=store["stride"])
    return np.asarray(sample, np.float64), str(features), store["stride"]


def assign_pixels(features, stride, centres, shape):
    data = gdal.Open(features).ReadAsArray().astype(np.float32)
    c, rows, cols = data.shape
    flat = data.reshape(c, -1).T
    valid = ~np.isnan(flat[:, 0])
    grid = np.zeros(rows * cols, np.int64)
    grid[valid] = kmeans.assign(flat[valid], centres) + 1
    grid = grid.reshape(rows, cols)
    return np.repeat(np.repeat(grid, stride, 0), stride, 1)[: shape[0], : shape[1]]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="kmeans,cnn")
    parser.add_argument("--json", type=Path, default=CACHE / "candidates.json")
    parser.add_argument("--analyse", action="store_true", help="only print the tables of an earlier --json")
    args = parser.parse_args(argv)
    if args.analyse:
        analyse(args.json)
        return
    results = {}
    for image, mask in pairs():
        classes, ignore = load_classes(mask)
        oracle = len(np.unique(classes[~ignore]))
        for method in args.methods.split(","):
            sample, features, stride = captured(method, image, image.stem)
            trial = sample[:10_000]
            centres = kmeans.fit_trial(trial, 12, 0)
            sizes = hierarchy.sizes_of(trial, centres)
            merges = hierarchy.merge_tree(centres, sizes)
            row = {"oracle": oracle, "merges": merges, "k": {}}
            for criterion in CRITERIA:
                row[criterion] = criterion_values(trial, centres, merges, 2, 12, criterion)
            row["total_variance"] = float(((trial - trial.mean(axis=0)) ** 2).sum(axis=1).mean())
            for k in range(2, 13):
                start, _, _ = hierarchy.merged(centres, sizes, merges, k)
                final = kmeans.fit(sample, k, 0, start=start)
                labels = assign_pixels(features, stride, final, classes.shape)
                row["k"][k] = rect_scores(labels, classes, ignore, k)
            results[f"{image.stem}|{method}"] = row
            print(image.stem, method, oracle, {k: round(100 * v[0], 1) for k, v in row["k"].items()},
                  file=sys.stderr, flush=True)
    args.json.write_text(json.dumps(results))
    analyse(args.json)



def candidates(row):
    """{candidate: chosen k} for one image's stored evidence."""
    merges = row["merges"]
    cost = {k: merges[12 - k][2] for k in range(2, 13)}  # the merge that takes k groups to k - 1
    between = sum(m[2] for m in merges)
    chosen = {f"fixed {k}": k for k in (3, 4, 5)}
    chosen["oracle"] = row["oracle"]
    for name in ("calinski_harabasz", "bic", "silhouette"):
        values = {int(k): v for k, v in row[name].items()}
        chosen[name] = min(values, key=lambda k: (-values[k], k))
    ratio = {k: cost[k] / max(cost[k + 1], 1e-12) for k in range(2, 12)}
    chosen["tree gap"] = min(ratio, key=lambda k: (-ratio[k], k))
    total = row.get("total_variance") or TOTALS[row["key"]]
    for share in (0.01, 0.02, 0.03, 0.04, 0.05, 0.07):
        chosen[f"ward share {share:g} of variance"] = max([k for k in range(2, 13) if cost[k] >= share * total]
                                                          or [2])
    for share in (0.02, 0.04, 0.05):
        chosen[f"ward share {share:g} of between (K 12)"] = max([k for k in range(2, 13)
                                                                 if cost[k] >= share * between] or [2])
    # elbow: the k farthest below the chord of the within cost W(k) from k=2 to 12
    within = {k: sum(cost[j] for j in range(k + 1, 13)) for k in range(2, 13)}
    line = {k: within[2] + (within[12] - within[2]) * (k - 2) / 10 for k in within}
    chosen["elbow"] = max(within, key=lambda k: (line[k] - within[k], -k))
    return chosen


def analyse(path):
    data = json.loads(Path(path).read_text())
    totals = CACHE / "total.json"  # total variances of a first version of this script's JSON
    TOTALS.update(json.loads(totals.read_text()) if totals.exists() else {})
    for key, row in data.items():
        row["key"] = key
    families = {}
    for key, row in data.items():
        name, method = key.split("|")
        families.setdefault(method, {}).setdefault(name.split("_")[0], []).append(row)
    for method, fams in families.items():
        names = list(candidates(next(iter(next(iter(fams.values()))))))
        print(f"\n{method}: strict / truth mIoU (cells assigned, no refinement), mean |K - oracle|")
        print("| candidate | " + " | ".join(fams) + " | all | mean K | mean abs err |")
        for cand in names:
            cells, allrows = [], []
            for rows in fams.values():
                picks = [(r["k"][str(candidates(r)[cand])], candidates(r)[cand], r["oracle"]) for r in rows]
                allrows += picks
                cells.append(f"{100 * np.mean([p[0][0] for p in picks]):.1f}")
            strict = 100 * np.mean([p[0][0] for p in allrows])
            truth = 100 * np.mean([p[0][1] for p in allrows])
            print(f"| {cand} | " + " | ".join(cells) + f" | {strict:.1f} / {truth:.1f} | "
                  f"{np.mean([p[1] for p in allrows]):.1f} | {np.mean([abs(p[1] - p[2]) for p in allrows]):.2f} |")


if __name__ == "__main__":
    main()
