"""Scores of label arrays against classes: per image K segments, Hungarian one-to-one matching, mIoU and accuracy.

Label rasters (ids 1..K, 0 = nodata, as every segmentation writes them) or cell grids (cluster ids 0..K-1 on the
stride-4 grid of the CNN's cells) against a Dubai mask or any class raster.
"""

import numpy as np
from osgeo import gdal

from .dubai import CLASS_COLOURS, load_classes
from .metrics import confusion, hungarian_scores


def score_labels(labels, mask_path, k):
    """(mIoU, accuracy) of a label raster's ids 1..``k`` (0 = nodata, ignored) against a Dubai mask."""
    classes, ignore = load_classes(mask_path)
    matrix = confusion(labels.astype(np.int64) - 1, classes, k, len(CLASS_COLOURS), ignore | (labels == 0))
    return hungarian_scores(matrix)


def score_grid(grid, mask_path, k=5, stride=4):
    """(mIoU, accuracy) of cluster ids ``grid`` (0..k-1, one per ``stride`` x ``stride`` cell) against a Dubai
    mask, each cell's id repeated over its pixels."""
    classes, ignore = load_classes(mask_path)
    labels = np.repeat(np.repeat(grid, stride, 0), stride, 1)[: classes.shape[0], : classes.shape[1]]
    return hungarian_scores(confusion(labels.astype(np.int64), classes, k, len(CLASS_COLOURS), ignore))


def read_class_raster(path, ignore=None):
    """(classes 0..C-1 int64, ignore mask, C) from a raster of class values (sorted distinct values -> 0..C-1);
    ``ignore`` and the band's nodata value are ignored."""
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    values = band.ReadAsArray().astype(np.int64)
    skip = np.zeros(values.shape, bool)
    for value in (ignore, band.GetNoDataValue()):
        if value is not None:
            skip |= values == int(value)
    present = np.unique(values[~skip])
    classes = np.searchsorted(present, values)
    classes[skip] = 0
    return classes, skip, len(present)


def score_class_raster(labels, classes, ignore, k):
    """(mIoU, accuracy) of a label raster's ids 1..``k`` against ``classes`` from ``read_class_raster``."""
    matrix = confusion(labels.astype(np.int64) - 1, classes, k, k, ignore | (labels == 0))
    return hungarian_scores(matrix)
