"""Unsupervised segmentation scores: Hungarian one-to-one matching of segments to classes, mIoU, accuracy."""

import numpy as np


def confusion(segments, classes, n_segments, n_classes, ignore=None):
    """(n_segments, n_classes) pixel counts; segments and classes are 0-based ints, ``ignore`` a bool mask."""
    keep = segments >= 0
    if ignore is not None:
        keep &= ~ignore
    index = segments[keep].astype(np.int64) * n_classes + classes[keep]
    return np.bincount(index, minlength=n_segments * n_classes).reshape(n_segments, n_classes)


def hungarian_scores(matrix):
    """mIoU over the classes present and pixel accuracy after the best one-to-one segment-to-class matching."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(matrix, maximize=True)
    matched = dict(zip(cols, rows))
    class_totals = matrix.sum(axis=0)
    segment_totals = matrix.sum(axis=1)
    ious = []
    for cls in np.nonzero(class_totals)[0]:
        if cls in matched:
            hit = matrix[matched[cls], cls]
            union = class_totals[cls] + segment_totals[matched[cls]] - hit
            ious.append(hit / union if union else 0.0)
        else:
            ious.append(0.0)
    accuracy = matrix[rows, cols].sum() / max(matrix.sum(), 1)
    return float(np.mean(ious)), float(accuracy)
