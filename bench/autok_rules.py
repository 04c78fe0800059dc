"""More label-free rules for choosing K (issue 22), scored against fixed K = 5 per tile family.

Reads what `python bench/autok_candidates.py` stored (every image's sample, its K_MAX = 12 tree and the scores of
every cut k = 2..12: cells assigned, no refinement) and adds, per image and method:
  - the within sums of squares of every merge's two groups (Duda-Hart), the smaller group's size, and the
    sample's covariance spectrum (effective dimension: participation ratio);
  - the share curve of RESAMPLES seeded bootstrap resamples of the trial points, each fitted from one k-means++ start
    (a split kept only if every resample keeps it; the mean curve; a split kept if any resample keeps it);
  - the agreement (adjusted Rand index) of each cut k of the fit with the same cut of each resample's tree, on the
    trial points (stability as in Ben-Hur et al. 2002 / Lange et al. 2004);
  - how intermixed in space the two sides of every merge are: the share of 4-neighbour cell pairs inside their union
    that join one side to the other, over that share for the same cells placed at random (1: salt and pepper, one
    kind; 0: apart), on the FEATURES raster's cells assigned to the fit's centres (a pass the engine's choice does
    not make; measured to see whether space would help).
Then prints, per rule, the gain over K = 5 per family (strict mIoU points), over all Dubai images (strict / truth
classes only), the mean K and the worst family. The per-k scores are those of the fit's tree cut, so a rule's
figure is exactly the "no refinement" column eval_refine.py would print for it.

    python bench/autok_rules.py [--json bench/out/autok/rules.json] [--analyse] [--seeds 4]

--seeds N also prints the share rule (4 %) with the fit's seed 0..N-1 (scored with seed 0's cuts: how far the
per-family figures move with the run's seed alone).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from autok_candidates import CACHE, TOTALS
from osgeo import gdal

from map_segmenter.engine.segmentation import hierarchy, kmeans

RESAMPLES = 4
FAMILIES = ("tile1", "tile2", "tile4", "tile5", "tile6", "tile8")


def adjusted_rand(a, b, ka, kb):
    """Adjusted Rand index of two labelings (0..ka-1, 0..kb-1) of the same points."""
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    pairs = lambda x: x * (x - 1) / 2  # noqa: E731
    together, rows, cols, total = pairs(table).sum(), pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum(), pairs(
        len(a))
    expected, largest = rows * cols / total, (rows + cols) / 2
    return (together - expected) / (largest - expected) if largest > expected else 1.0


def measure(sample, features):
    """The extra evidence of one image (see the module's docstring); ``features``: its FEATURES raster."""
    trial = sample[:10_000]
    centres = kmeans.fit_trial(trial, 12, 0)
    merges = hierarchy.merge_tree(centres, hierarchy.sizes_of(trial, centres))
    leaves = kmeans.assign(trial, centres).astype(np.int64) + 1
    members = {leaf: [leaf] for leaf in range(1, 13)}
    within = {}
    for number, (a, b, _) in enumerate(merges):
        groups = [trial[np.isin(leaves, members[int(node)])] for node in (a, b)]
        joined = np.vstack(groups)
        within[12 - number] = [float(((g - g.mean(axis=0)) ** 2).sum()) for g in groups] + [
            float(((joined - joined.mean(axis=0)) ** 2).sum()), len(joined), min(len(g) for g in groups)]
        members[13 + number] = members.pop(int(a)) + members.pop(int(b))
    curves, stability = [], {k: [] for k in range(2, 13)}
    for resample in range(1, RESAMPLES + 1):
        drawn = trial[np.random.default_rng((0, resample)).integers(len(trial), size=len(trial))]
        spares = kmeans.fit_trial(drawn, 12, resample, restarts=1)
        tree = hierarchy.merge_tree(spares, hierarchy.sizes_of(drawn, spares))
        curves.append(hierarchy.evidence(drawn, tree, 2, 12))
        their_leaves = kmeans.assign(trial, spares).astype(np.int64) + 1
        for k in range(2, 13):
            ours = hierarchy.cut(merges, 12, k)[leaves].astype(np.int64) - 1
            theirs = hierarchy.cut(tree, 12, k)[their_leaves].astype(np.int64) - 1
            stability[k].append(adjusted_rand(ours, theirs, k, k))
    return {"within": within, "spectrum": np.linalg.eigvalsh(np.cov(trial.T)).tolist(), "curves": curves,
            "stability": stability, "mixing": mixing(features, centres, merges)}


def mixing(features, centres, merges):
    """{k: how intermixed the two sides of the merge k -> k - 1 are} (see the module's docstring)."""
    data = gdal.Open(features).ReadAsArray().astype(np.float32)
    flat = data.reshape(len(data), -1).T
    valid = ~np.isnan(flat).any(axis=1)
    grid = np.zeros(len(flat), np.int64)
    grid[valid] = kmeans.assign(flat[valid], centres) + 1
    grid = grid.reshape(data.shape[1:])
    segments = len(centres)
    pairs = np.zeros((segments + 1, segments + 1))
    for first, second in ((grid[:, :-1], grid[:, 1:]), (grid[:-1, :], grid[1:, :])):
        np.add.at(pairs, (first.ravel(), second.ravel()), 1)
    pairs += pairs.T
    counts = np.bincount(grid.ravel(), minlength=segments + 1).astype(np.float64)
    members, result = {leaf: [leaf] for leaf in range(1, segments + 1)}, {}
    for number, (a, b, _) in enumerate(merges):
        one, other = members.pop(int(a)), members.pop(int(b))
        across, inside = pairs[np.ix_(one, other)].sum(), pairs[np.ix_(one + other, one + other)].sum()
        n_one, n_other = counts[one].sum(), counts[other].sum()
        at_random = 2 * n_one * n_other / (n_one + n_other) ** 2
        result[segments - number] = float(2 * across / inside / at_random) if inside and at_random else 0.0
        members[segments + 1 + number] = one + other
    return result


def seed_picks(sample, seeds):
    return [hierarchy.choose(sample, 2, 12, seed)[0] for seed in range(seeds)]


# ------------------------------------------------------------------------------------------------------------ rules


def shares(row, key):
    total = row.get("total_variance") or TOTALS[key]
    return {k: row["merges"][12 - k][2] / total for k in range(2, 13)}


def most_kept(kept):
    return max(kept) if kept else 2


def duda_hart(z):
    """Top-down: a node's split stands while Je(2)/Je(1) is below the critical value for the effective dimension;
    K = 1 + the splits that stand from the root down (z = 3.20: Milligan and Cooper's choice)."""
    def rule(row, more, key):
        spectrum = np.array(more["spectrum"])
        dims = spectrum.sum() ** 2 / (spectrum**2).sum()
        k = 1
        for kk in range(2, 13):
            first, second, joined, n, _ = more["within"][str(kk)]
            critical = 1 - 2 / (np.pi * dims) - z * np.sqrt(2 * (1 - 8 / (np.pi**2 * dims)) / (n * dims))
            if (first + second) / joined >= critical:
                break
            k = kk
        return max(k, 2)
    return rule


def mojena(c, log=False):
    """The first merge whose height exceeds the mean of all heights by c standard deviations (Mojena 1977)."""
    def rule(row, more, key):
        heights = np.array([m[2] for m in row["merges"]])
        heights = np.log(heights) if log else heights
        limit = heights.mean() + c * heights.std(ddof=1)
        above = [number for number, height in enumerate(heights) if height > limit]
        return max(12 - above[0], 2) if above else 2
    return rule


def relative_loss(c):
    """Hartigan-like: a merge k -> k-1 that raises the within variance W(k) by at least c of itself."""
    def rule(row, more, key):
        share = shares(row, key)
        within = {k: 1 - sum(share[j] for j in range(2, k + 1)) for k in range(2, 13)}
        return most_kept([k for k in range(2, 13) if share[k] >= c * within[k]])
    return rule


def share_rule(threshold, combine=None):
    """The share of the variance a merge loses, of the fit alone or combined over the fit and its resamples."""
    def rule(row, more, key):
        share = shares(row, key)
        if combine:
            share = {k: combine([share[k]] + [curve[str(k)] for curve in more["curves"]]) for k in share}
        return hierarchy.best_k(share, threshold)
    return rule


def share_and_smaller_part(threshold, part):
    """A split kept if its merge loses at least ``threshold`` and its smaller side holds ``part`` of the trial."""
    def rule(row, more, key):
        share = shares(row, key)
        return most_kept([k for k in range(2, 13) if share[k] >= threshold
                          and more["within"][str(k)][4] >= part * 10_000])
    return rule


def share_and_apart(threshold, most_mixed):
    """A split kept if its merge loses at least ``threshold`` and its sides are not intermixed in space."""
    def rule(row, more, key):
        share = shares(row, key)
        return most_kept([k for k in range(2, 13) if share[k] >= threshold
                          and more["mixing"][str(k)] < most_mixed])
    return rule


def stable_argmax(row, more, key):
    stability = {int(k): np.mean(v) for k, v in more["stability"].items()}
    return max(stability, key=lambda k: (stability[k], k))


def share_and_stable(threshold, agreement):
    def rule(row, more, key):
        share = shares(row, key)
        return most_kept([k for k in range(2, 13) if share[k] >= threshold
                          and np.mean(more["stability"][str(k)]) >= agreement])
    return rule


RULES = {
    "fixed 5": lambda row, more, key: 5,
    "oracle": lambda row, more, key: row["oracle"],
    "ward share 4 % (fit alone, kept)": share_rule(0.04),
    "ward share 4 %, least over fit + 4 resamples": share_rule(0.04, min),
    "ward share 4 %, mean over fit + 4 resamples": share_rule(0.04, np.mean),
    "ward share 4 %, most over fit + 4 resamples": share_rule(0.04, max),
    "Duda-Hart, z 3.2, effective dims": duda_hart(3.2),
    "Mojena, c 1.25": mojena(1.25),
    "Mojena on log heights, c 0.5": mojena(0.5, log=True),
    "relative loss >= 0.2 W(k)": relative_loss(0.2),
    "relative loss >= 0.25 W(k)": relative_loss(0.25),
    "ward share 4 % and smaller side >= 5 % of the points": share_and_smaller_part(0.04, 0.05),
    "ward share 4 % and sides mixed < 0.3 (space)": share_and_apart(0.04, 0.3),
    "ward share 3 % and sides mixed < 0.3 (space)": share_and_apart(0.03, 0.3),
    "stability (ARI) argmax": stable_argmax,
    "ward share 4 % and ARI >= 0.5": share_and_stable(0.04, 0.5),
    "ward share 4 % and ARI >= 0.6": share_and_stable(0.04, 0.6),
}


def gains(data, more, pick, name):
    """A table row per method: strict gain over K = 5 per family; all images strict / truth; mean K; worst."""
    cells = []
    for method in ("kmeans", "cnn"):
        per_family = {family: [] for family in FAMILIES}
        for key, row in data.items():
            image, their_method = key.split("|")
            if their_method != method:
                continue
            k = str(pick(row, more.get(key), key))
            chosen, five = row["k"][k], row["k"]["5"]
            per_family[image.split("_")[0]].append((chosen[0] - five[0], chosen[1] - five[1], int(k)))
        rows = sum(per_family.values(), [])
        family_gains = [100 * np.mean([r[0] for r in per_family[f]]) for f in FAMILIES]
        cells.append(" ".join(f"{g:+.1f}" for g in family_gains)
                     + f" | {100 * np.mean([r[0] for r in rows]):+.2f} / {100 * np.mean([r[1] for r in rows]):+.2f}"
                     + f" | {np.mean([r[2] for r in rows]):.2f} | {min(family_gains):+.1f}")
    print(f"| {name} | " + " | ".join(cells) + " |")


def analyse(path, seeds_path):
    data = json.loads((CACHE / "candidates.json").read_text())
    totals = CACHE / "total.json"  # total variances of a first version of autok_candidates' JSON
    TOTALS.update(json.loads(totals.read_text()) if totals.exists() else {})
    more = json.loads(Path(path).read_text())
    print("Gain over K = 5, mIoU points, cells assigned (no refinement); per family: strict; then all Dubai images "
          "strict / truth classes; mean K; worst family.\n")
    print("| rule | kmeans: " + " ".join(FAMILIES) + " | all | K | worst | cnn: " + " ".join(FAMILIES)
          + " | all | K | worst |")
    print("|---|---|---|---:|---:|---|---|---:|---:|")
    for name, rule in RULES.items():
        gains(data, more, rule, name)
    if seeds_path.exists():
        picks = json.loads(seeds_path.read_text())
        for seed in range(len(next(iter(picks.values())))):
            gains(data, more, lambda row, _, key, s=seed: picks[key][s],
                  f"ward share 4 %, fit seed {seed} (scored on seed 0's cuts)")
        changing = np.mean([len(set(seeds)) > 1 for seeds in picks.values()])
        print(f"\nImages (and methods) whose K changes with the seed: {100 * changing:.0f} %")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=CACHE / "rules.json")
    parser.add_argument("--analyse", action="store_true", help="only print the tables of an earlier --json")
    parser.add_argument("--seeds", type=int, default=0, help="also choose K with the fit's seeds 0..N-1")
    args = parser.parse_args(argv)
    seeds_path = args.json.with_name(args.json.stem + "_seeds.json")
    if not args.analyse:
        more, picks = {}, {}
        for key in json.loads((CACHE / "candidates.json").read_text()):
            image, method = key.split("|")
            sample = np.load(CACHE / f"{image}_{method}_sample.npz")["sample"].astype(np.float64)
            more[key] = measure(sample, str(CACHE / f"{image}_{method}_features.tif"))
            if args.seeds:
                picks[key] = seed_picks(sample, args.seeds)
            print(key, file=sys.stderr, flush=True)
        args.json.write_text(json.dumps(more))
        if args.seeds:
            seeds_path.write_text(json.dumps(picks))
    analyse(args.json, seeds_path)


if __name__ == "__main__":
    main()
