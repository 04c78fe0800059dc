"""Fixtures of the engine tests."""

import pytest

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans


@pytest.fixture(scope="module")
def kampala_pair(tmp_path_factory, kampala_crop):
    """segment_kmeans labels + FEATURES of the real crop (517 x 389 px: partial blocks at right and bottom), the
    inputs of segmenter:knn_refine."""
    folder = tmp_path_factory.mktemp("knn_kampala")
    labels, features = str(folder / "labels.tif"), str(folder / "features.tif")
    segment_kmeans(kampala_crop, labels, segments=6, block=4, seed=1, features_path=features)
    return labels, features
