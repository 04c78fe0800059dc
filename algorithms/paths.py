"""Paths of layers and destinations as QGIS gives them, decoded the one way QGIS itself decodes them: every layer's
file through its provider (QgsProviderRegistry.decodeUri), never by cutting a source at a "|" (a legal character
in Linux and macOS file names); vector destinations in the forms Processing takes. The engine gets plain paths and
layer names."""

import os

from qgis.core import QgsDataSourceUri, QgsProviderRegistry


def layer_path(layer):
    """The file path of a map layer, decoded by its provider (QGIS's registry), never by cutting its source at a
    "|": a file name may hold one (legal on Linux and macOS)."""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    return parts.get("path") or layer.source()


def vector_destination(value):
    """(file path, layer name or None) of a vector destination as QGIS gives it: a path, "path|layername=name",
    or the "ogr:dbname='path' table=\"name\"" of the dialogs' Save to GeoPackage (decoded as QGIS's Processing
    itself decodes it, by QgsDataSourceUri)."""
    if not value:
        return value, None
    if value.startswith("ogr:"):
        uri = QgsDataSourceUri(value[len("ogr:"):])
        if uri.database():
            return uri.database(), uri.table() or None
        value = value[len("ogr:"):]
    if "|" in value and not os.path.exists(value):
        parts = QgsProviderRegistry.instance().decodeUri("ogr", value)
        if parts.get("path") and parts.get("path") != value:
            return parts["path"], parts.get("layerName") or None
    return value, None
