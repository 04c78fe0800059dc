"""The one segmentation pipeline, its K-Means and CNN extractors, K-Means, merge tree, label pass."""
