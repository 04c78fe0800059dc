"""The part of a raster to segment: an extent snapped to its pixel grid, and polygons outside which pixels are
nodata.

Both stay lazy, so a region of a huge mosaic streams like the whole mosaic: the extent becomes a virtual
(VRT) window of the input, read window by window as any raster; the polygons are burnt into each window's
validity mask when that window is read (GDAL's rasterizer on an in-memory raster of the window), so no mask
raster of the whole area is ever written.
"""

import math
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr, osr

from ..runtime import params
from ..runtime.errors import InputError

gdal.UseExceptions()
ogr.UseExceptions()


@dataclass(frozen=True)
class Region:
    """``extent``: (xmin, ymin, xmax, ymax) in the raster's CRS, or None for the whole raster.
    ``mask_path``: a polygon file OGR reads (first layer) in the raster's CRS, or None for no mask.
    ``mask_name``: how messages name the mask when ``mask_path`` is a copy made for the engine (the user's
    layer, reprojected): its layer name or file; None names ``mask_path``."""

    extent: tuple = None
    mask_path: str = None
    mask_name: str = None

    def __bool__(self):
        return self.extent is not None or bool(self.mask_path)


def snapped_window(dataset, extent, path):
    """(xoff, yoff, width, height): the pixels of ``dataset`` whose cells intersect ``extent``, on its grid."""
    geotransform = dataset.GetGeoTransform(can_return_null=True)
    if geotransform is None or geotransform[2] or geotransform[4]:
        raise InputError(f"{params.EXTENT} needs a north-up georeferenced raster; '{path}' has "
                         f"{'no geotransform' if geotransform is None else 'a rotated grid'}.")
    x0, dx, _, y0, _, dy = geotransform
    xmin, ymin, xmax, ymax = extent
    if not (xmax > xmin and ymax > ymin):
        raise InputError(f"The extent {xmin}, {ymin}, {xmax}, {ymax} is empty. Choose an area with a width and "
                         f"a height.")
    columns = sorted(((xmin - x0) / dx, (xmax - x0) / dx))
    rows = sorted(((ymax - y0) / dy, (ymin - y0) / dy))
    left, right = max(0, math.floor(columns[0] + 1e-6)), min(dataset.RasterXSize, math.ceil(columns[1] - 1e-6))
    top, bottom = max(0, math.floor(rows[0] + 1e-6)), min(dataset.RasterYSize, math.ceil(rows[1] - 1e-6))
    if right <= left or bottom <= top:
        full = (x0, y0 + dy * dataset.RasterYSize, x0 + dx * dataset.RasterXSize, y0)
        raise InputError(
            f"The extent {xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g} does not overlap the raster '{path}' "
            f"({full[0]:.6g}, {full[1]:.6g}, {full[2]:.6g}, {full[3]:.6g} in its CRS). Choose an extent over the "
            f"raster.")
    return left, top, right - left, bottom - top


def window_dataset(dataset, extent, path):
    """A virtual raster of the pixels of ``dataset`` under ``extent``: the same values, a grid that lines up
    pixel for pixel with the whole raster's."""
    xoff, yoff, width, height = snapped_window(dataset, extent, path)
    if (xoff, yoff, width, height) == (0, 0, dataset.RasterXSize, dataset.RasterYSize):
        return dataset
    return gdal.Translate("", dataset, format="VRT", srcWin=[xoff, yoff, width, height])


POLYGON_TYPES = (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface,
                 ogr.wkbPolyhedralSurface, ogr.wkbTIN, ogr.wkbTriangle)


def geometry_type_name(kind):
    return ogr.GeometryTypeToName(kind).replace(" ", "")


class PolygonMask:
    """A validity band (255 inside the polygons, 0 outside) computed for each window when it is read: it answers
    ``ReadAsArray`` like the raster's own mask bands, at full or reduced resolution, on any affine grid (rotated
    or sheared too: the window gets the raster's whole geotransform)."""

    def __init__(self, path, dataset, name=None):
        shown = name or f"'{path}'"
        self.path, self.name = path, shown
        try:
            self.source = ogr.Open(path)
        except RuntimeError as error:
            raise InputError(f"The {params.MASK} {shown} cannot be read as polygons ({error}).") from None
        if self.source is None or self.source.GetLayerCount() == 0:
            raise InputError(f"The {params.MASK} {shown} has no layer of polygons.")
        self.layer = self.source.GetLayer(0)
        kind = ogr.GT_Flatten(self.layer.GetGeomType())
        kinds = {kind} if kind != ogr.wkbUnknown else {
            ogr.GT_Flatten(feature.GetGeometryRef().GetGeometryType()) for feature in self.layer
            if feature.GetGeometryRef() is not None}
        self.layer.ResetReading()
        wrong = sorted(geometry_type_name(item) for item in kinds if item not in POLYGON_TYPES)
        if wrong:
            raise InputError(f"The {params.MASK} {shown} holds {' and '.join(wrong)} geometries; a mask must be "
                             f"polygons (only pixels inside them are segmented). Choose a polygon layer.")
        if self.layer.GetFeatureCount() == 0:
            raise InputError(f"The {params.MASK} {shown} holds no polygons: nothing would be segmented.")
        self.geotransform = dataset.GetGeoTransform(can_return_null=True)
        if self.geotransform is None:
            raise InputError(f"{params.MASK} needs a georeferenced raster: the input has no geotransform.")
        self.projection = dataset.GetProjection()
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize

    def ReadAsArray(self, xoff, yoff, width, height, buf_xsize=None, buf_ysize=None):  # noqa: N802 - GDAL's name
        buf_xsize, buf_ysize = buf_xsize or width, buf_ysize or height
        x0, a, b, y0, c, d = self.geotransform
        sx, sy = width / buf_xsize, height / buf_ysize
        window = gdal.GetDriverByName("MEM").Create("", buf_xsize, buf_ysize, 1, gdal.GDT_Byte)
        window.SetGeoTransform((x0 + xoff * a + yoff * b, a * sx, b * sy, y0 + xoff * c + yoff * d, c * sx, d * sy))
        if self.projection:
            window.SetProjection(self.projection)
        gdal.RasterizeLayer(window, [1], self.layer, burn_values=[255])
        return window.GetRasterBand(1).ReadAsArray()


def check_mask_overlaps(mask, path):
    """Refuse polygons that miss the raster (a MASK in another CRS, or of another area)."""
    x0, a, b, y0, c, d = mask.geotransform
    corners = [(x0 + a * col + b * row, y0 + c * col + d * row)
               for col in (0, mask.width) for row in (0, mask.height)]
    xs = (min(x for x, _ in corners), max(x for x, _ in corners))
    ys = (min(y for _, y in corners), max(y for _, y in corners))
    xmin, xmax, ymin, ymax = mask.layer.GetExtent()
    if xmax < xs[0] or xmin > xs[1] or ymax < ys[0] or ymin > ys[1]:
        reference = osr.SpatialReference(wkt=mask.projection) if mask.projection else None
        crs = reference.GetAuthorityCode(None) if reference is not None else None
        raise InputError(
            f"The {params.MASK} {mask.name} ({xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g}) does not overlap the "
            f"raster '{path}' ({xs[0]:.6g}, {ys[0]:.6g}, {xs[1]:.6g}, {ys[1]:.6g}{f', EPSG:{crs}' if crs else ''}). "
            f"Give polygons over the raster, in its CRS.")
    if not np.isfinite([xmin, xmax, ymin, ymax]).all():
        raise InputError(f"The {params.MASK} {mask.name} has no valid geometry.")
