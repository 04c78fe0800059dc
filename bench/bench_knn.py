"""Benchmark segmenter:knn_refine on a large real-content raster (not a test).

Builds (once, cached under bench/out/) a ~100 MPix mosaic by tiling the Kampala orthophoto in a VRT, segments it
with segment_kmeans (block 4, K 8, FEATURES written), then prints in one run:
  - knn_refine with default parameters: wall time and peak RSS (in a subprocess),
  - gdal_translate of the same labels (reference for the cost of reading + writing a label raster),
  - the query stage with cKDTree vs brute force on the same index and the same query points.
Usage:
    python bench/bench_knn.py [--mpix 100] [--brute-points 20000]
"""

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "knn"
MOSAIC = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"
sys.path.insert(0, str(ROOT / ".build" / "plugins"))

from osgeo import gdal  # noqa: E402

gdal.UseExceptions()


def tiled_vrt(path, side):
    """A VRT of ``side`` x ``side`` px that repeats the Kampala mosaic (real content, any size)."""
    source = gdal.Open(str(MOSAIC))
    width, height, bands = source.RasterXSize, source.RasterYSize, source.RasterCount
    x0, dx, _, y0, _, dy = source.GetGeoTransform()
    lines = [f'<VRTDataset rasterXSize="{side}" rasterYSize="{side}">',
             f"  <SRS>{escape(source.GetProjection())}</SRS>",
             f"  <GeoTransform>{x0}, {dx}, 0, {y0}, 0, {dy}</GeoTransform>"]
    for band in range(1, bands + 1):
        lines.append(f'  <VRTRasterBand dataType="Byte" band="{band}">')
        lines.append(f"    <ColorInterp>{['Red', 'Green', 'Blue'][band - 1]}</ColorInterp>")
        for y in range(0, side, height):
            for x in range(0, side, width):
                w, h = min(width, side - x), min(height, side - y)
                lines += [
                    "    <SimpleSource>",
                    f'      <SourceFilename relativeToVRT="0">{MOSAIC}</SourceFilename>',
                    f"      <SourceBand>{band}</SourceBand>",
                    f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                    f'      <DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/>',
                    "    </SimpleSource>",
                ]
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    Path(path).write_text("\n".join(lines))
    return str(path)


def prepare(mpix):
    """Cached inputs: (image, labels, features) paths for a square raster of about ``mpix`` MPix."""
    from map_segmenter.engine.kmeans_segmentation import segment_kmeans

    side = int(round(math.sqrt(mpix * 1e6)))
    OUT.mkdir(parents=True, exist_ok=True)
    image = OUT / f"kampala_{side}.tif"
    labels = OUT / f"kampala_{side}_labels.tif"
    features = OUT / f"kampala_{side}_features.tif"
    if not image.exists():
        vrt = tiled_vrt(OUT / f"kampala_{side}.vrt", side)
        start = time.perf_counter()
        gdal.Translate(str(image), vrt, creationOptions=["TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1"])
        print(f"prepared {image.name} ({side} x {side}) in {time.perf_counter() - start:.1f} s", flush=True)
    if not (labels.exists() and features.exists()):
        start = time.perf_counter()
        segment_kmeans(str(image), str(labels), segments=8, block=4, seed=0, features_path=str(features))
        print(f"segment_kmeans (K 8, block 4) in {time.perf_counter() - start:.1f} s", flush=True)
    return str(image), str(labels), str(features)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mpix", type=float, default=100.0)
    args = parser.parse_args()
    print(prepare(args.mpix))
