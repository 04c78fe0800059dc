"""segmenter:blur speed and memory on a 100 MPix label raster of real content, beside gdal_translate of it.

    python bench/bench_blur.py [--mpix 100] [--repeats 3] [--labels LABELS.tif]

The label raster is segment_kmeans (K = 8, block 4: the defaults of segmenter:kmeans) of the Kampala mosaic
(bench/common.py), cached in bench/out/; --labels takes any label raster instead. Each figure is the median
wall time of separate processes (rounds interleave the commands, so load drifts hit all alike) and the
largest peak RSS. Measured: blur_labels majority medium and high (the engine call segmenter:blur makes,
default MEMORY_MB), gdal_translate with default options (the reference) and with the compressed, tiled
options the blur writes. Targets: medium <= 5 x gdal_translate, high <= 2 x medium.
"""

import argparse
import sys

from common import OUT, engine_command, interleaved, measure, mosaic, output_options


def labels_raster(mpix):
    path = OUT / f"blur_labels_{mpix:g}mp.tif"
    if not path.exists():
        source = mosaic(mpix)
        print(f"making {path.name}: segment_kmeans of {source.name} ...", flush=True)
        code = ("from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans; "
                f"segment_kmeans({str(source)!r}, {str(path)!r}, segments=8, block=4)")
        measure(engine_command(code))
    return path


def blur_command(source, output, strength):
    return engine_command(
        "from map_segmenter.engine.steps.blur import blur_labels; "
        f"blur_labels({str(source)!r}, {str(output)!r}, method='majority', strength={strength!r})"
    )


def label_bench_arguments(description):
    """The command line of a benchmark on a label raster: (arguments, the label raster to use)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpix", type=float, default=100, help="size of the label raster to make (MPix)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labels", help="an existing label raster to use instead")
    args = parser.parse_args()
    return args, args.labels or labels_raster(args.mpix)


def main():
    args, source = label_bench_arguments(__doc__)
    output = OUT / "blur_out.tif"
    commands = {
        "gdal_translate": ["gdal_translate", "-q", str(source), str(OUT / "blur_translate.tif")],
        "gdal_translate -co (as blur writes)": [
            "gdal_translate", "-q", *output_options(), str(source), str(OUT / "blur_translate_co.tif")],
        "blur majority medium": blur_command(source, output, "medium"),
        "blur majority high": blur_command(source, output, "high"),
    }
    seconds, peak = interleaved(commands, args.repeats)
    print(f"label raster: {source} (median of {args.repeats} runs each)")
    print(f"{'':36s} {'seconds':>8} {'peak RSS MB':>12}")
    for name in commands:
        print(f"{name:36s} {seconds[name]:8.2f} {peak[name]:12.0f}")
    medium = seconds["blur majority medium"] / seconds["gdal_translate"]
    high = seconds["blur majority high"] / seconds["blur majority medium"]
    print(f"medium / gdal_translate: {medium:.2f} (target <= 5)")
    print(f"medium / gdal_translate -co: {seconds['blur majority medium'] / seconds[list(commands)[1]]:.2f}")
    print(f"high / medium: {high:.2f} (target <= 2)")
    for leftover in ("blur_translate.tif", "blur_translate_co.tif", "blur_out.tif", "blur_out.qml"):
        (OUT / leftover).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
