"""The cost of the automatic choice of K and of the re-cut (issue 22).

    python bench/bench_autok.py [--repeats 3] [--skip-kmeans] [--skip-merge]

1. segment_kmeans on the 25 MPix Kampala mosaic (bench/common.py) with SEGMENTS = 8 and SEGMENTS = 0, each in its
   own process, rounds interleaved; target: automatic <= 1.15 x fixed K.
2. merge_labels (segmenter:merge, K 8 -> 4) of the 100 MPix K-Means label raster of bench_blur.py beside
   blur_labels majority medium of it; target: merge <= 1.5 x blur.
Figures are medians of separate processes; the machine is shared, so compare within one run.
"""

import argparse

from bench_blur import blur_command, labels_raster

from common import OUT, engine_command, interleaved, mosaic


def kmeans_command(source, output, segments):
    return engine_command("from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans; "
                          f"segment_kmeans({str(source)!r}, {str(output)!r}, segments={segments})")


def merge_command(source, output, segments):
    return engine_command("from map_segmenter.engine.steps.merge import merge_labels; "
                          f"merge_labels({str(source)!r}, {str(output)!r}, {segments})")


def report(title, seconds, peak, base, target):
    print(title)
    for name in seconds:
        print(f"  {name:34s} {seconds[name]:7.2f} s  {peak[name]:6.0f} MB  {seconds[name] / seconds[base]:5.2f} x")
    print(f"  target <= {target} x {base}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-kmeans", action="store_true")
    parser.add_argument("--skip-merge", action="store_true")
    args = parser.parse_args()
    if not args.skip_kmeans:
        source = mosaic(25)
        seconds, peak = interleaved({"kmeans SEGMENTS=8": kmeans_command(source, OUT / "autok_k8.tif", 8),
                                     "kmeans SEGMENTS=0": kmeans_command(source, OUT / "autok_auto.tif", 0)},
                                    args.repeats)
        report(f"25 MPix ({source.name}), median of {args.repeats}", seconds, peak, "kmeans SEGMENTS=8", 1.15)
    if not args.skip_merge:
        labels = labels_raster(100)
        seconds, peak = interleaved({"blur majority medium": blur_command(labels, OUT / "autok_blur.tif", "medium"),
                                     "merge 8 -> 4": merge_command(labels, OUT / "autok_merge.tif", 4)},
                                    args.repeats)
        report(f"100 MPix ({labels.name}), median of {args.repeats}", seconds, peak, "blur majority medium", 1.5)


if __name__ == "__main__":
    main()
