"""``segmenter:kmeans``: K-Means on colour and texture block descriptors."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..engine.kmeans_segmentation import segment_kmeans
from .base import SegmenterAlgorithm

HELP = """Divides a raster into K kinds of region ("segments") of similar colour and texture, without labels.

Each BLOCK_SIZE x BLOCK_SIZE block is described by its mean colour (CIELAB for 3 bands) and the standard deviation of each band (texture), taken over the block and its 8 neighbours. K-Means centres are fitted on a seeded sample spread over the whole raster, then every block is assigned to its nearest centre. Works on rasters of any size within MEMORY_MB; results do not depend on MEMORY_MB.

Input: any raster GDAL reads (GeoTIFF, JPEG, VRT...), 8-bit, 16-bit or float. Nodata pixels and alpha = 0 are left out and stay nodata.
BANDS: bands to segment; default: the first three bands that are not alpha. Set it for rasters with fewer than three bands, or to pick e.g. NIR.
SEGMENTS: number of kinds of region K (2-254).
BLOCK_SIZE: block side in pixels; 4 = fine (the predecessor's High), 8 = medium, 16 = coarse.
SEED: seed of the sample and initialisation; same seed, same result.
REFERENCE: optional label raster made earlier by this algorithm; its centres are used instead of fitting, so several rasters get the same id for the same kind of surface.
MEMORY_MB (advanced): working-memory budget; the raster is processed in windows that fit it.

Output: Byte label raster on the input's grid: ids 1..K ordered from dark to light, 0 = nodata, with a colour table and a .qml style. FEATURES (optional): the block descriptors, one Float32 band each, on the block grid, for segmenter:knn_refine."""


class KMeansAlgorithm(SegmenterAlgorithm):
    ID = "kmeans"
    TITLE = "K-Means segmentation"
    SUMMARY = "Unsupervised segmentation into K kinds of region by colour and texture."
    HELP = HELP

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.addParameter(
            QgsProcessingParameterBand("BANDS", "Bands (default: first three)", None, "INPUT", True, True)
        )
        self.addParameter(
            QgsProcessingParameterNumber("SEGMENTS", "Segments (K)", QgsProcessingParameterNumber.Integer, 8,
                                         False, 2, 254)
        )
        self.addParameter(
            QgsProcessingParameterNumber("BLOCK_SIZE", "Block size (px)", QgsProcessingParameterNumber.Integer, 4,
                                         False, 1, 4096)
        )
        self.addParameter(QgsProcessingParameterNumber("SEED", "Seed", QgsProcessingParameterNumber.Integer, 0,
                                                       False, 0))
        self.addParameter(
            QgsProcessingParameterRasterLayer("REFERENCE", "Reference segmentation (reuse its centres)",
                                              optional=True)
        )
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("MEMORY_MB", "Memory budget (MB)", QgsProcessingParameterNumber.Integer,
                                         256, False, 1, 1_000_000)
        ))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Segments"))
        self.addParameter(
            QgsProcessingParameterRasterDestination("FEATURES", "Block descriptors", optional=True,
                                                    createByDefault=False)
        )
        self.addOutput(QgsProcessingOutputNumber("SEGMENTS", "Number of segments"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.run_engine(
            segment_kmeans,
            feedback,
            block=self.parameterAsInt(parameters, "BLOCK_SIZE", context),
            **self.segmentation_arguments(parameters, context, feedback),
        )
        return self.segmentation_outputs(result)
