"""Rasters on disk: window plans, GDAL I/O, regions, metadata, colours, label and feature rasters."""
