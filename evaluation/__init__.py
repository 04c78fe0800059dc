"""Scoring segmentations against labelled imagery, shared by bench/ and training/ (never imported by the plugin).

``metrics``: confusion matrices and Hungarian one-to-one matching (mIoU, pixel accuracy); ``dubai``: the labelled
Dubai tiles of data/dubai_hitl and their class colours; ``scoring``: label rasters or cell grids scored against
class masks with both. Needs numpy, scipy and Pillow.
"""
