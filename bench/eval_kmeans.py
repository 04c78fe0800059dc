"""Score segmenter:kmeans on the labelled Dubai tiles (K = 5 per image, Hungarian matching, mIoU).

Runs the same engine function as the plugin and scores with the evaluation package (map_segmenter.evaluation), as
`python -m training.eval` does. Usage:
    python bench/eval_kmeans.py [--block 4] [--context 1] [--texture 0.5] [--images N]
"""

import argparse
import tempfile

import numpy as np
from osgeo import gdal

from map_segmenter.engine.segmentation import descriptors
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.evaluation.dubai import pairs
from map_segmenter.evaluation.scoring import score_labels


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", type=int, default=4)
    parser.add_argument("--context", type=int, default=1)
    parser.add_argument("--texture", type=float, default=descriptors.TEXTURE_WEIGHT)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument("--images", type=int, default=0, help="score only the first N images (0 = all)")
    args = parser.parse_args()
    descriptors.TEXTURE_WEIGHT = args.texture
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for number, (image, mask) in enumerate(pairs()):
            if args.images and number >= args.images:
                break
            out = f"{scratch}/labels.tif"
            segment_kmeans(str(image), out, segments=args.segments, block=args.block, context=args.context,
                           texture_weight=args.texture)
            labels = gdal.Open(out).ReadAsArray()
            miou, accuracy = score_labels(labels, mask, args.segments)
            rows.append((image.stem, miou, accuracy))
    for name, miou, accuracy in rows:
        print(f"{name:16s} mIoU {100 * miou:5.1f}  acc {100 * accuracy:5.1f}")
    mious, accs = zip(*[(m, a) for _, m, a in rows])
    print(f"MEAN over {len(rows)} images: mIoU {100 * np.mean(mious):.1f}  pixel accuracy {100 * np.mean(accs):.1f}"
          f"  (block {args.block}, context {args.context}, texture {args.texture})")


if __name__ == "__main__":
    main()
