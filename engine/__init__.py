"""Numerics and raster I/O for Map Segmenter.

Depends on numpy and GDAL only (onnxruntime where the CNN path needs it); never imports qgis or torch,
so it runs inside QGIS, in plain Python, in tests and in workers of a distributed engine.
"""

VERSION = "0.2.0"
