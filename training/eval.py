"""Score segmentations on labelled imagery: per image K = number of classes, Hungarian one-to-one matching of
segments to classes, mIoU (over the classes present) and pixel accuracy, then the mean over images.

    python -m training.eval --methods cnn,kmeans --model onnx_models/student_s4_v1.onnx --tiles tile6,tile8
    python -m training.eval --methods kmeans --dataset kampala
    python -m training.eval --methods cnn --model M.onnx --image scene.tif --labels classes.tif [--ignore 255]

Methods run the plugin's own engine code: ``cnn`` is segmenter:cnn (engine.segmentation.cnn_segmentation.segment_cnn,
default parameters, ONNX Runtime), ``kmeans`` is segmenter:kmeans
(engine.segmentation.kmeans_segmentation.segment_kmeans, defaults). Scoring is the evaluation package's
(map_segmenter.evaluation: metrics, the Dubai protocol, scoring), the same code bench/eval_kmeans.py scores with.
Datasets: ``dubai`` (data/dubai_hitl, 5 classes; --tiles picks tiles, e.g. the held-out tile6,tile8),
``kampala`` (data/kampala_oam building mask, 2 classes), or any --image/--labels pair (class ids in a raster).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

from map_segmenter.evaluation.dubai import CLASS_COLOURS, pairs
from map_segmenter.evaluation.scoring import read_class_raster, score_class_raster, score_labels

from . import ROOT

KAMPALA = (ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif",
           ROOT / "data" / "kampala_oam" / "kampala_osm_buildings_mask.tif")
DEFAULT_MODEL = ROOT / "onnx_models" / "student_s4_v1.onnx"


def run_method(method, image, k, scratch, model=None, seed=0):
    """Label array (ids 1..K, 0 = nodata) from the plugin's engine function for ``method``."""
    out = str(Path(scratch) / f"{method}_labels.tif")
    if method == "cnn":
        from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

        if not model:
            raise SystemExit("--methods cnn needs --model FILE.onnx")
        segment_cnn(str(image), out, str(model), segments=k, seed=seed)
    elif method == "kmeans":
        from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

        segment_kmeans(str(image), out, segments=k, seed=seed)
    else:
        raise SystemExit(f"unknown method {method!r}; choose cnn or kmeans")
    labels = gdal.Open(out).ReadAsArray()
    Path(out).unlink(missing_ok=True)
    return labels


def items(args):
    """(name, image, scorer(labels) -> (miou, accuracy), K) for the chosen dataset."""
    if args.image or args.labels:
        if not (args.image and args.labels):
            raise SystemExit("--image and --labels go together")
        classes, ignore, k = read_class_raster(args.labels, args.ignore)
        return [(Path(args.image).stem, args.image, lambda lab: score_class_raster(lab, classes, ignore, k), k)]
    if args.dataset == "kampala":
        classes, ignore, k = read_class_raster(KAMPALA[1])
        return [("kampala_buildings", KAMPALA[0], lambda lab: score_class_raster(lab, classes, ignore, k), k)]
    tiles = None if args.tiles in (None, "", "all") else set(args.tiles.split(","))
    chosen = [(image, mask) for image, mask in pairs() if tiles is None or image.stem.split("_")[0] in tiles]
    if args.images:
        chosen = chosen[: args.images]
    k = len(CLASS_COLOURS)
    return [(image.stem, image, (lambda lab, m=mask: score_labels(lab, m, k)), k) for image, mask in chosen]


def evaluate(methods, entries, model=None, seed=0, log=print):
    """{method: [(name, k, miou, accuracy, seconds)]} over ``entries`` from ``items``."""
    results = {method: [] for method in methods}
    with tempfile.TemporaryDirectory() as scratch:
        for name, image, scorer, k in entries:
            for method in methods:
                began = time.time()
                labels = run_method(method, image, k, scratch, model, seed)
                miou, accuracy = scorer(labels)
                results[method].append((name, k, miou, accuracy, time.time() - began))
            log(f"  {name}: " + ", ".join(f"{m} {100 * results[m][-1][2]:.1f}" for m in methods), file=sys.stderr)
    return results


def table(results):
    """A Markdown table: one row per image, a mIoU and an accuracy column per method, and the mean row."""
    methods = list(results)
    head = "| image | K | " + " | ".join(f"{m} mIoU | {m} acc" for m in methods) + " |"
    rule = "|---|---:|" + "---:|---:|" * len(methods)
    lines = [head, rule]
    first = results[methods[0]]
    for index, (name, k, *_rest) in enumerate(first):
        cells = " | ".join(f"{100 * results[m][index][2]:.1f} | {100 * results[m][index][3]:.1f}" for m in methods)
        lines.append(f"| {name} | {k} | {cells} |")
    means = " | ".join(f"**{100 * np.mean([r[2] for r in results[m]]):.1f}** | "
                       f"**{100 * np.mean([r[3] for r in results[m]]):.1f}**" for m in methods)
    lines.append(f"| **mean of {len(first)}** | | {means} |")
    return "\n".join(lines)


def summary(results):
    return {m: dict(miou=float(np.mean([r[2] for r in rows])), accuracy=float(np.mean([r[3] for r in rows])),
                    images=len(rows), seconds=float(sum(r[4] for r in rows))) for m, rows in results.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="cnn,kmeans", help="comma-separated: cnn, kmeans")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model for the cnn method")
    parser.add_argument("--dataset", choices=["dubai", "kampala"], default="dubai")
    parser.add_argument("--tiles", default="all", help="Dubai tiles, e.g. tile6,tile8 (default all)")
    parser.add_argument("--images", type=int, default=0, help="only the first N images (0 = all)")
    parser.add_argument("--image", help="a raster to segment (with --labels)")
    parser.add_argument("--labels", help="its class raster (class values; nodata and --ignore are skipped)")
    parser.add_argument("--ignore", type=int, help="class value to ignore in --labels")
    parser.add_argument("--seed", type=int, default=0, help="SEED given to both methods")
    parser.add_argument("--json", type=Path, help="also write the rows and means to this JSON file")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = evaluate(methods, items(args), args.model, args.seed, log=print)
    print(table(results))
    means = summary(results)
    for method, values in means.items():
        print(f"{method}: mean mIoU {100 * values['miou']:.1f}, pixel accuracy {100 * values['accuracy']:.1f} over "
              f"{values['images']} images ({values['seconds']:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()}, means=means,
                                             rows={m: [list(r) for r in rows] for m, rows in results.items()},
                                             table=table(results)), indent=2))
    return results


if __name__ == "__main__":
    main()
