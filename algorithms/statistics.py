"""``segmenter:statistics``: per-segment pixels, areas, shares and image colours as a table; the segments as
polygons; an HTML report with a bar chart."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..engine.runtime import params
from ..engine.runtime.outputs import gpkg_layers
from ..engine.steps.statistics import segment_statistics
from .base import POSTPROCESSING, SegmenterAlgorithm
from .paths import vector_destination
from .qgis_compat import ProcessingSourceType
from .styling import style_polygons_when_loaded


class StatisticsAlgorithm(SegmenterAlgorithm):
    GROUP = POSTPROCESSING
    ID = "statistics"

    def texts(self):
        title = self.tr("Segment statistics and polygons")
        summary = self.tr("How much of the area each segment covers, its mean colour, the segments as polygons and "
                          "a chart.")
        return title, summary, self.tr(
            "Measures a segmentation: one table row per segment present, the segments as polygons for editing and "
            "overlays, and a report with a chart. Nodata pixels are left out everywhere.\n\n"
            "Segments: a label raster, e.g. the result of K-Means segmentation, Smooth segments or Render "
            "segments, or any one-band integer raster (a classification) with a nodata value.\n"
            "Image: optional raster on the same grid, e.g. the one the segments were made from; the table then "
            "gives the mean and standard deviation of each of its bands over each segment.\n"
            "Merge polygons smaller than: optional simplification of the polygons only, in pixels. Regions smaller "
            "than this merge into their largest neighbour before the polygons are made (GDAL's sieve), so "
            "neighbouring polygons still share their boundaries exactly, without gaps or overlaps. 0 keeps every "
            "region; the table always counts the raster as it is.\n"
            "Memory budget (advanced): working memory; the result does not depend on it.\n"
            "Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; "
            "its workers count the windows (reading Segments and Image themselves), with the same table. Empty = "
            "this computer.\n\n"
            "Segment statistics: a table without geometry, GeoPackage or CSV: segment number, name, colour, pixel "
            "count, area, share of the valid area in %, and the image statistics. Areas are the pixel count times "
            "the pixel's area: in m², ha and km² when the CRS is projected in metres (other units: map units² and "
            "m²); for a geographic CRS (degrees) the area on the ellipsoid, in fields ending in _ellipsoidal.\n"
            "Segment polygons (optional): a GeoPackage of the segments as polygons in the raster's CRS, with "
            "segment, name and area; it loads coloured and named like the segments.\n"
            "Report (optional): an HTML page with a bar chart of the area of each segment in its colour, and the "
            "table."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_segments_input(self.tr("A label raster, e.g. the result of K-Means segmentation, or any one-band "
                                        "integer raster with a nodata value."))
        self.add(QgsProcessingParameterRasterLayer(params.IMAGE, self.tr("Image (for colour statistics)"),
                                                   optional=True),
                 self.tr("Optional raster on the grid of the segments; the table gives each band's mean and "
                         "standard deviation per segment."))
        self.integer(params.SIEVE, self.tr("Merge polygons smaller than (px; 0 = keep all)"), 0, 0,
                     help_text=self.tr("Simplifies the polygons: regions smaller than this many pixels merge into "
                                       "their largest neighbour first, so boundaries stay shared (no gaps or "
                                       "overlaps). The table is not affected."))
        self.add_memory_and_scheduler()
        self.add(QgsProcessingParameterVectorDestination(params.OUTPUT, self.tr("Segment statistics"),
                                                         ProcessingSourceType.Vector),
                 self.tr("Table without geometry (.gpkg or .csv): one row per segment with pixels, areas, share "
                         "and image statistics."))
        self.add(QgsProcessingParameterVectorDestination(params.POLYGONS, self.tr("Segment polygons"),
                                                         ProcessingSourceType.VectorPolygon, optional=True,
                                                         createByDefault=False),
                 self.tr("The segments as polygons (GeoPackage) with segment, name and area, styled with the "
                         "segments' colours."))
        self.add(QgsProcessingParameterFileDestination(params.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"),
                                                       optional=True, createByDefault=False),
                 self.tr("An HTML page with a bar chart of each segment's area in its colour, and the table."))
        self.addOutput(QgsProcessingOutputNumber(params.SEGMENT_COUNT, self.tr("Number of segments present")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        output = self.parameterAsOutputLayer(parameters, params.OUTPUT, context)
        polygons = self.parameterAsOutputLayer(parameters, params.POLYGONS, context) or None
        output_path, output_layer = vector_destination(output)
        polygons_path, polygons_layer = vector_destination(polygons)
        result = self.run_engine(
            segment_statistics,
            feedback,
            input_path=self.raster_path(parameters, params.INPUT, context),
            output_path=output_path,
            output_layer=output_layer,
            image_path=self.raster_path(parameters, params.IMAGE, context, required=False),
            polygons_path=polygons_path,
            polygons_layer=polygons_layer,
            report_path=self.parameterAsFileOutput(parameters, params.REPORT, context) or None,
            sieve=self.parameterAsInt(parameters, params.SIEVE, context),
            **self.memory_and_scheduler(parameters, context),
        )
        outputs = {params.OUTPUT: self.loaded_as(context, output, result.output, result.output_layer),
                   params.SEGMENT_COUNT: len(result.segments)}
        if result.polygons:
            legend = [(segment.value, segment.colour, segment.name) for segment in result.segments]
            polygons = self.loaded_as(context, polygons, result.polygons, result.polygons_layer)
            style_polygons_when_loaded(context, polygons, legend)
            outputs[params.POLYGONS] = polygons
        if result.report:
            outputs[params.REPORT] = result.report
        return outputs

    @staticmethod
    def loaded_as(context, value, path, layer):
        """What QGIS loads of an output written at ``path``: the file, or "path|layername=layer" when the GeoPackage
        holds other layers too (then loaded in place of the destination ``value``)."""
        if not layer or set(gpkg_layers(path) or {}) <= {layer, "layer_styles"}:
            return value if value and not value.startswith("ogr:") and "|" not in value else path
        source = f"{path}|layername={layer}"
        if value != source and context.willLoadLayerOnCompletion(value):
            details = context.layerToLoadOnCompletionDetails(value)
            layers = context.layersToLoadOnCompletion()
            layers.pop(value, None)
            layers[source] = details
            context.setLayersToLoadOnCompletion(layers)
        return source
