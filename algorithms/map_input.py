"""What to segment when INPUT is not a raster file GDAL reads: the layer drawn by QGIS's own renderer (web tiles,
WMS, vector layers with their style) into a temporary GeoTIFF over an extent at a pixel size, window by window;
and MASK polygons handed to the engine as a GeoPackage in the raster's CRS.

Rendering runs in the algorithm's thread on a clone of the layer made in the main thread (``prepareAlgorithm``),
as QGIS's own Convert map to raster does.
"""

import math
import os

import numpy as np
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureRequest,
    QgsFields,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication, QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from ..engine.rasters.raster_io import GTIFF_OPTIONS
from ..engine.runtime import params
from .qgis_compat import CrsWktVariant, GeometryType, ProcessingFeatureSourceFlag, WkbType

TILE = 1024  # px rendered at a time: one RGBA image of 4 MB
MAX_PIXELS = 1_000_000_000  # a rendered raster larger than this is refused (every pixel is fetched and drawn)
SUGGESTED_PIXELS = 100_000_000
OSM_TILE_LIMIT = 5000  # OpenStreetMap's tile usage policy forbids bulk downloads
DPI = 96  # fixed, so symbol sizes in mm render the same on every machine


def tr(text):
    """pylupdate5 files the strings of a module-level tr() under the context "@default"."""
    return QCoreApplication.translate("@default", text)


def is_gdal_file(layer):
    return isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal"


def native_pixel_size(layer):
    """The layer's own resolution in its CRS units: a file's pixel, a tile service's finest zoom; None for layers
    drawn from vectors."""
    if not isinstance(layer, QgsRasterLayer):
        return None
    provider = layer.dataProvider()
    resolutions = [r for r in provider.nativeResolutions() if r > 0] if provider is not None else []
    if resolutions:
        return min(resolutions)
    if layer.width() > 0 and layer.extent().width() > 0 and provider.capabilities() & provider.Size:
        return layer.rasterUnitsPerPixelX()
    return None


def render_grid(layer, extent, pixel_size):
    """(extent snapped outwards to whole pixels, width, height) of the raster the layer is drawn into."""
    if extent is None or extent.isEmpty():
        raise QgsProcessingException(tr(
            "Layer '{}' has no extent of its own to segment (a tile service covers the world): choose the area "
            "with Area to segment ({extent}).").format(layer.name(), extent=params.EXTENT))
    if not pixel_size or pixel_size <= 0:
        raise QgsProcessingException(tr(
            "Layer '{}' has no pixel size of its own: set Pixel size ({pixel_size}) in its CRS units.").format(
            layer.name(), pixel_size=params.PIXEL_SIZE))
    # an extent typed or printed in decimal is a whole number of pixels only to about 1e-6 of a pixel
    width = max(1, math.ceil(extent.width() / pixel_size - 1e-6))
    height = max(1, math.ceil(extent.height() / pixel_size - 1e-6))
    if width * height > MAX_PIXELS:
        suggested = pixel_size * math.sqrt(width * height / SUGGESTED_PIXELS)
        raise QgsProcessingException(tr(
            "Drawing layer '{layer}' over this extent at {size:g} units per pixel makes a raster of {w} x {h} px "
            "({gpix:.1f} GPix), more than {limit} GPix. Choose a smaller area or a pixel size of at least {suggest:.3g} "
            "(about 100 MPix).").format(layer=layer.name(), size=pixel_size, w=width, h=height,
                                        gpix=width * height / 1e9, limit=MAX_PIXELS // 10**9, suggest=suggested))
    snapped = QgsRectangle(extent.xMinimum(), extent.yMaximum() - height * pixel_size,
                           extent.xMinimum() + width * pixel_size, extent.yMaximum())
    return snapped, width, height


def check_tile_policy(layer, extent, pixel_size):
    """Refuse what OpenStreetMap's tile usage policy calls bulk downloading (other servers set their own)."""
    source = layer.source().lower()
    if "tile.openstreetmap.org" not in source:
        return
    resolutions = sorted(layer.dataProvider().nativeResolutions())
    if not resolutions:
        return
    level = min(resolutions, key=lambda resolution: abs(resolution - pixel_size))
    tiles = math.ceil(extent.width() / level / 256) * math.ceil(extent.height() / level / 256)
    if tiles > OSM_TILE_LIMIT:
        raise QgsProcessingException(tr(
            "This would download about {} tiles from tile.openstreetmap.org, which its usage policy forbids "
            "(bulk downloading). Choose a smaller area or a coarser pixel size.").format(tiles))


def render_layer(layer, extent, pixel_size, crs, transform_context, feedback):
    """Draw ``layer`` (a clone, with its style) over ``extent`` (in ``crs``) at ``pixel_size`` into an RGBA GeoTIFF
    in Processing's temporary folder, TILE x TILE px at a time; alpha 0 where nothing was drawn. Returns its path."""
    extent, width, height = render_grid(layer, extent, pixel_size)
    check_tile_policy(layer, extent, pixel_size)
    path = QgsProcessingUtils.generateTempFilename("rendered_input.tif")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset = gdal.GetDriverByName("GTiff").Create(path, width, height, 4, gdal.GDT_Byte, GTIFF_OPTIONS)
    dataset.SetGeoTransform((extent.xMinimum(), pixel_size, 0.0, extent.yMaximum(), 0.0, -pixel_size))
    dataset.SetProjection(crs.toWkt(CrsWktVariant.PreferredGdal))
    dataset.GetRasterBand(4).SetColorInterpretation(gdal.GCI_AlphaBand)
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(crs)
    settings.setTransformContext(transform_context)
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    settings.setOutputDpi(DPI)
    settings.setFlag(Qgis.MapSettingsFlag.Antialiasing, True)
    settings.setFlag(Qgis.MapSettingsFlag.RenderMapTile, True)  # no labels cut at tile edges
    if not isinstance(layer, QgsRasterLayer):  # a raster layer drawn with a buffer lands one pixel off (3.22)
        settings.setExtentBuffer(32 * pixel_size)  # symbols that cross a tile edge are drawn whole on both sides
    tiles = [(x, y) for y in range(0, height, TILE) for x in range(0, width, TILE)]
    errors, drawn = [], False
    feedback.pushInfo(tr("Drawing layer '{}' into {} x {} px ({} tiles of {} px)").format(
        layer.name(), width, height, len(tiles), TILE))
    try:
        for number, (x, y) in enumerate(tiles):
            if feedback.isCanceled():
                raise QgsProcessingException(tr("Cancelled by the user; no output was written."))
            tile_w, tile_h = min(TILE, width - x), min(TILE, height - y)
            settings.setOutputSize(QSize(tile_w, tile_h))
            settings.setExtent(QgsRectangle(
                extent.xMinimum() + x * pixel_size, extent.yMaximum() - (y + tile_h) * pixel_size,
                extent.xMinimum() + (x + tile_w) * pixel_size, extent.yMaximum() - y * pixel_size))
            image = QImage(tile_w, tile_h, QImage.Format.Format_ARGB32)
            image.fill(0)
            painter = QPainter(image)
            job = QgsMapRendererCustomPainterJob(settings, painter)
            job.renderSynchronously()
            painter.end()
            errors += [f"{error.layerID}: {error.message}" for error in job.errors()]
            bgra = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
            bgra = bgra.reshape(tile_h, image.bytesPerLine() // 4, 4)[:, :tile_w]
            drawn = drawn or bool(bgra[..., 3].any())
            for band, channel in enumerate((2, 1, 0, 3), start=1):  # QImage ARGB32 is B, G, R, A in memory
                dataset.GetRasterBand(band).WriteArray(bgra[..., channel], x, y)
            feedback.setProgress(100.0 * (number + 1) / len(tiles))
        dataset.FlushCache()
    except BaseException:
        dataset = None
        gdal.Unlink(path)
        raise
    dataset = None
    if not drawn:
        gdal.Unlink(path)
        detail = tr(" The renderer reported: {}.").format("; ".join(dict.fromkeys(errors))) if errors else ""
        raise QgsProcessingException(tr(
            "Layer '{}' drew nothing over this extent: the server may be unreachable, or the layer has no data "
            "there.{}").format(layer.name(), detail))
    if errors:
        feedback.pushWarning(tr("While drawing layer '{}': {}").format(layer.name(), "; ".join(dict.fromkeys(errors))))
    return path


def polygons_file(source, crs, transform_context, feedback, name=params.MASK):
    """MASK's polygons reprojected to ``crs``, in a temporary GeoPackage the engine reads; None when empty.
    ``name`` is how messages name the user's layer (never the temporary copy)."""
    if QgsWkbTypes.geometryType(source.wkbType()) != GeometryType.Polygon:
        kind = QgsWkbTypes.displayString(source.wkbType()) or "no"
        raise QgsProcessingException(tr(
            "The {mask} {} holds {} geometries; a mask must be polygons (only pixels inside them are segmented). "
            "Choose a polygon layer.").format(name, kind, mask=params.MASK))
    path = QgsProcessingUtils.generateTempFilename("mask.gpkg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    writer = QgsVectorFileWriter.create(path, QgsFields(), WkbType.MultiPolygon, crs, transform_context, options)
    transform = QgsCoordinateTransform(source.sourceCrs(), crs, transform_context)
    count = 0
    # OSM-style polygons are often slightly invalid (self-touching rings): mended, not refused
    features = source.getFeatures(QgsFeatureRequest().setNoAttributes(),
                                  ProcessingFeatureSourceFlag.SkipGeometryValidityChecks)
    for feature in features:
        if feedback.isCanceled():
            break
        geometry = feature.geometry()
        if geometry.isEmpty():
            continue
        if not geometry.isGeosValid():
            geometry = geometry.makeValid()
        geometry.transform(transform)
        geometry.convertToMultiType()
        output = QgsFeature()
        output.setGeometry(geometry)
        writer.addFeature(output)
        count += 1
    del writer
    if not count:
        raise QgsProcessingException(tr("The {mask} {} holds no polygons: nothing would be segmented.").format(
            name, mask=params.MASK))
    return path
