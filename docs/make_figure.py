"""Regenerate docs/kampala_result.png: the bundled Kampala sample beside its segmenter:kmeans labels."""

import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal
from PIL import Image

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"
XOFF, YOFF, SIZE, SCALE = 1024, 512, 1024, 2

with tempfile.TemporaryDirectory() as scratch:
    labels_path = f"{scratch}/labels.tif"
    segment_kmeans(str(SOURCE), labels_path, segments=8, block=4)
    labels = gdal.Open(labels_path)
    table = labels.GetRasterBand(1).GetRasterColorTable()
    palette = np.array([table.GetColorEntry(i)[:3] for i in range(table.GetCount())], np.uint8)
    ids = labels.ReadAsArray(XOFF, YOFF, SIZE, SIZE)
rgb = np.moveaxis(gdal.Open(str(SOURCE)).ReadAsArray(XOFF, YOFF, SIZE, SIZE), 0, -1)
side = SIZE // SCALE
left = Image.fromarray(rgb).resize((side, side), Image.BILINEAR)
right = Image.fromarray(palette[ids]).resize((side, side), Image.NEAREST)
figure = Image.new("RGB", (2 * side + 8, side), "white")
figure.paste(left, (0, 0))
figure.paste(right, (side + 8, 0))
figure.save(ROOT / "docs" / "kampala_result.png", optimize=True)
