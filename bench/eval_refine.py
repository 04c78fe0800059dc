"""Score segmenter:knn_refine and segmenter:blur on the project's labelled data, beside their inputs.

For every labelled Dubai image (K = 5) and the Kampala buildings (K = 2): segmenter:kmeans and segmenter:cnn
labels with their FEATURES (cached under bench/out/refine/, so a rerun only re-runs the refinement), then
blur (majority, medium), knn_refine and blur -> knn_refine on each, all with the engine's defaults unless
--knn sets parameters. Printed per tile family (Dubai tile1..tile8, Kampala) and over all Dubai images:
  - mIoU (%) after per-image Hungarian matching, over the classes in the truth or the prediction ("strict",
    the held-out figure of shared/MEASUREMENTS.md) and over the classes in the truth (training.eval's figure),
  - connected fragments per MPix (4-connected regions of one id, nodata excluded),
  - the images where a refined result scores below its input.
Usage:
    python bench/eval_refine.py [--methods kmeans,cnn] [--tiles tile1,tile2] [--images N]
                                [--knn iterations=3,mix=0.8] [--no-blur] [--json out.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

from map_segmenter.evaluation.dubai import CLASS_COLOURS, load_classes, pairs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / "out" / "refine"
MODEL = ROOT / "onnx_models" / "student_s4_v1.onnx"
KAMPALA = (ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif",
           ROOT / "data" / "kampala_oam" / "kampala_osm_buildings_mask.tif")

gdal.UseExceptions()


def entries(tiles=None, images=0, kampala=True):
    """(name, family, image path, truth loader () -> (classes, ignore), K)."""
    chosen = []
    for image, mask in pairs():
        family = image.stem.split("_")[0]
        if tiles is None or family in tiles:
            chosen.append((image.stem, family, image, (lambda m=mask: load_classes(m)), len(CLASS_COLOURS)))
    if images:
        chosen = chosen[:images]
    if kampala and (tiles is None or "kampala" in tiles):
        def truth():
            values = gdal.Open(str(KAMPALA[1])).ReadAsArray().astype(np.int64)
            return values, np.zeros(values.shape, bool)
        chosen.append(("kampala_buildings", "kampala", KAMPALA[0], truth, 2))
    return chosen


def segmentation(method, name, image, k):
    """Cached (labels, features) paths of segmenter:kmeans or segmenter:cnn with defaults (seed 0); ``k`` 0: the
    automatic choice (SEGMENTS = 0)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tag = method if k != 0 else f"{method}_auto_{criterion_version()}"
    if k not in (0, 5) and "kampala" not in name:
        tag = f"{method}_k{k}"
    labels, features = CACHE / f"{name}_{tag}.tif", CACHE / f"{name}_{tag}_features.tif"
    if not (labels.exists() and features.exists()):
        if method == "kmeans":
            from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

            segment_kmeans(str(image), str(labels), segments=k, seed=0, features_path=str(features))
        else:
            from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

            segment_cnn(str(image), str(labels), str(MODEL), segments=k, seed=0, features_path=str(features))
    return str(labels), str(features)


def criterion_version():
    """A digest of the code that chooses K (engine/segmentation/hierarchy.py and segmentation._centres): cached
    automatic-K runs of another version of it are not reused."""
    import hashlib
    import inspect

    from map_segmenter.engine.segmentation import hierarchy
    from map_segmenter.engine.segmentation import pipeline as segmentation

    code = inspect.getsource(hierarchy) + inspect.getsource(segmentation._centres)
    return hashlib.sha256(code.encode()).hexdigest()[:8]


def blurred(labels, strength="medium"):
    """Cached segmenter:blur (majority, ``strength``) of ``labels``."""
    from map_segmenter.engine.steps.blur import blur_labels

    out = labels.replace(".tif", "_blur.tif" if strength == "medium" else f"_blur_{strength}.tif")
    if not Path(out).exists():
        blur_labels(labels, out, strength=strength)
    return out


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def scores(labels, classes, ignore, k, n_classes=None):
    """(mIoU strict, mIoU over truth classes, pixel accuracy) after Hungarian matching of ids 1..``k`` to classes
    0..``n_classes`` - 1 (default ``k``; a k x n_classes matrix when K was chosen: unmatched segments count as
    errors of the classes they cover)."""
    from scipy.optimize import linear_sum_assignment

    n_classes = n_classes or k
    keep = ~ignore & (labels > 0)
    matrix = np.bincount((labels[keep].astype(np.int64) - 1) * n_classes + classes[keep],
                         minlength=k * n_classes).reshape(k, n_classes)
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    matched = dict(zip(cols, rows))
    class_totals, segment_totals = matrix.sum(axis=0), matrix.sum(axis=1)
    strict, truth = [], []
    for cls in range(n_classes):
        segment = matched.get(cls)
        hit = matrix[segment, cls] if segment is not None else 0
        size = segment_totals[segment] if segment is not None else 0
        union = class_totals[cls] + size - hit
        iou = hit / union if union else 0.0
        if class_totals[cls] or size:
            strict.append(iou)
        if class_totals[cls]:
            truth.append(iou)
    return float(np.mean(strict)), float(np.mean(truth)), float(matrix[rows, cols].sum() / max(matrix.sum(), 1))


def fragments(labels):
    """4-connected regions of one id (nodata excluded) per MPix of valid pixels."""
    from scipy import ndimage

    total = 0
    for value in np.unique(labels):
        if value:
            total += ndimage.label(labels == value)[1]
    return total / max(1, np.count_nonzero(labels)) * 1e6


def parse_options(text):
    options = {}
    for item in filter(None, (text or "").split(",")):
        key, value = item.split("=")
        options[key.strip()] = float(value) if "." in value or "e" in value else int(value)
    return options


def label_count(path):
    from map_segmenter.engine.rasters.metadata import LabelMeta

    return LabelMeta.read(gdal.Open(str(path))).k


def evaluate(chosen, methods, knn_options, with_blur=True, log=print, strength="medium", ks=("5",)):
    """{(name, family): {variant: (strict, truth, accuracy, fragments/MPix, seconds)}}; ``ks``: the K of each
    run, "5" (the classes of the protocol; 2 on Kampala), "auto" (SEGMENTS = 0) or "oracle" (the number of
    classes the image's truth holds)."""
    from map_segmenter.engine.steps.knn_refine import refine_knn

    results = {}
    scratch = CACHE / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    for name, family, image, truth, n_classes in chosen:
        classes, ignore = truth()
        row = {}
        for method, mode in [(m, mode) for m in methods for mode in ks]:
            k = {"5": n_classes, "auto": 0, "oracle": len(np.unique(classes[~ignore]))}[mode]
            labels, features = segmentation(method, name, image, k)
            k = label_count(labels)
            prefix = method if ks == ("5",) else f"{method}[{mode}]"
            inputs = [(prefix, labels)]
            if with_blur:
                inputs.append((f"{prefix}+blur", blurred(labels, strength)))
            for variant, path in inputs:
                values = read(path)
                row[variant] = (*scores(values, classes, ignore, k, n_classes), fragments(values), 0.0, k)
                out = str(scratch / f"{variant}.tif")
                began = time.perf_counter()
                refine_knn(path, features, out, **knn_options)
                seconds = time.perf_counter() - began
                values = read(out)
                row[f"{variant}+knn"] = (*scores(values, classes, ignore, k, n_classes), fragments(values), seconds,
                                         k)
        results[(name, family)] = row
        log(f"  {name}: " + ", ".join(f"{v} {100 * s[0]:.1f}" for v, s in row.items()), file=sys.stderr)
    return results


def report(results):
    """Markdown tables: per family, then Dubai overall; mIoU strict / truth, fragments per MPix."""
    variants = list(next(iter(results.values())))
    families = list(dict.fromkeys(family for _, family in results))
    groups = [(f, [r for (n, fam), r in results.items() if fam == f]) for f in families]
    dubai = [r for (n, fam), r in results.items() if fam != "kampala"]
    if len(families) > 1 and dubai:
        groups.append((f"Dubai, {len(dubai)} images", dubai))
    lines = ["mIoU strict (truth or prediction) / mIoU truth classes / fragments per MPix:", "",
             "| family | n | " + " | ".join(variants) + " |", "|---|---:|" + "---|" * len(variants)]
    for family, rows in groups:
        cells = []
        for v in variants:
            strict, truth, frag = (np.mean([r[v][i] for r in rows]) for i in (0, 1, 3))
            cells.append(f"{100 * strict:.1f} / {100 * truth:.1f} / {frag:.0f}")
        lines.append(f"| {family} | {len(rows)} | " + " | ".join(cells) + " |")
    lines += ["", "Refined minus its input (mIoU strict points; fragments %; images lower than the input):", "",
              "| family | " + " | ".join(v for v in variants if v.endswith("+knn")) + " |",
              "|---|" + "---|" * sum(v.endswith("+knn") for v in variants)]
    for family, rows in groups:
        cells = []
        for v in variants:
            if not v.endswith("+knn"):
                continue
            base = v[: -len("+knn")]
            gain = np.mean([r[v][0] - r[base][0] for r in rows])
            frag = np.mean([r[v][3] for r in rows]) / np.mean([r[base][3] for r in rows]) - 1
            lower = sum(r[v][0] < r[base][0] - 1e-9 for r in rows)
            cells.append(f"{100 * gain:+.2f} / {100 * frag:+.0f} % / {lower}")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += automatic_against_fixed(variants, groups)
    seconds = sum(r[v][4] for r in results.values() for v in variants)
    lines.append(f"\nknn_refine time over all runs: {seconds:.1f} s")
    lines += ["", "Mean K per family:", "", "| family | " + " | ".join(variants) + " |",
              "|---|" + "---:|" * len(variants)]
    for family, rows in groups:
        lines.append(f"| {family} | " + " | ".join(f"{np.mean([r[v][5] for r in rows]):.2f}" for v in variants) + " |")
    return "\n".join(lines)


def automatic_against_fixed(variants, groups):
    """Issue 22's targets: per family, automatic K minus K = 5 (mIoU strict / truth classes, points), with
    knn_refine and without, for every method run with both."""
    pairs = [(f"{m}[5]{tail}", f"{m}[auto]{tail}") for m in dict.fromkeys(v.split("[")[0] for v in variants)
             for tail in ("+knn", "") if f"{m}[5]{tail}" in variants and f"{m}[auto]{tail}" in variants]
    if not pairs:
        return []
    lines = ["", "Automatic K minus K = 5 (mIoU strict / truth classes, points; targets with knn: strict >= +2.5, "
             "truth >= 0 over Dubai, strict > 0 in every family):", "",
             "| family | " + " | ".join(auto for _, auto in pairs) + " |", "|---|" + "---|" * len(pairs)]
    for family, rows in groups:
        cells = [" / ".join(f"{100 * np.mean([r[auto][i] - r[fixed][i] for r in rows]):+.2f}" for i in (0, 1))
                 for fixed, auto in pairs]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="kmeans,cnn")
    parser.add_argument("--tiles", default="all", help="families, e.g. tile1,kampala (default all)")
    parser.add_argument("--images", type=int, default=0, help="only the first N Dubai images (0 = all)")
    parser.add_argument("--knn", default="", help="refine_knn parameters, e.g. iterations=3,mix=0.8")
    parser.add_argument("--no-blur", action="store_true", help="skip the blur and blur -> knn_refine columns")
    parser.add_argument("--blur", default="medium", choices=["low", "medium", "high"], help="blur STRENGTH")
    parser.add_argument("--json", type=Path, help="also write every image's figures to this JSON file")
    parser.add_argument("--k", default="5", help="K of the runs, comma-separated: 5 (the protocol's; 2 on "
                        "Kampala), auto (SEGMENTS = 0), oracle (the classes the truth holds); e.g. 5,auto,oracle")
    args = parser.parse_args(argv)
    tiles = None if args.tiles in ("", "all") else set(args.tiles.split(","))
    methods = [m for m in args.methods.split(",") if m]
    options = parse_options(args.knn)
    ks = tuple(args.k.split(","))
    results = evaluate(entries(tiles, args.images), methods, options, not args.no_blur, strength=args.blur, ks=ks)
    print(f"knn_refine parameters: {options or 'defaults'}; blur: majority, {args.blur}")
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({f"{n}|{f}": r for (n, f), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
