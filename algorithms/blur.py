"""``segmenter:blur``: smooths a label raster by a vote of each pixel's neighbourhood."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..engine.blur import METHODS, STRENGTHS, blur_labels
from .base import SegmenterAlgorithm

STRENGTH_NAMES = list(STRENGTHS)

HELP = """Smooths a label raster: every pixel takes the segment that wins a vote of its neighbourhood. Removes speckle and small islands and straightens ragged boundaries, keeping segment ids, grid and style.

Input: a label raster (one band of integer segment ids, 0 = nodata), such as the OUTPUT of segmenter:kmeans or segmenter:cnn. Nodata pixels stay nodata and do not vote.
METHOD: majority = each segment counts its pixels in a square box around the pixel (the classic majority filter); gaussian = each segment's pixels are weighted by a Gaussian with the spread of that box, so near pixels count more than far ones (rounder boundaries).
STRENGTH: low, medium or high = boxes of 5, 11 or 21 px for labels made with 4 px blocks; high runs two passes. The boxes grow with the block size the labels were made with (read from their metadata): 11, 23 and 43 px for 8 px blocks.
RADIUS (advanced): box half-width in pixels (the box is 2 x RADIUS + 1 px wide), one pass; replaces STRENGTH. 0 = use STRENGTH. At most 200 (100 for gaussian).
ITERATIONS: how many times the whole smoothing is repeated; each repetition smooths further.
MEMORY_MB (advanced): working-memory budget; the raster is processed in windows that fit it. Results do not depend on it.

Ties: a pixel keeps its own segment when it is among the most voted; otherwise the lowest id among the most voted wins.

Output: a label raster on the input's grid with the same data type, ids, colours, segment names and metadata (centres, features), so segmenter:knn_refine and segmenter:render work on it as on the input; the smoothing settings are added to its metadata."""


class BlurAlgorithm(SegmenterAlgorithm):
    GROUP = ("postprocessing", "Post-processing")
    ID = "blur"
    TITLE = "Smooth segments (blur)"
    SUMMARY = "Smooths a label raster by a majority or Gaussian vote of each pixel's neighbourhood."
    HELP = HELP

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Segments (label raster)"))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", list(METHODS), defaultValue=0))
        self.addParameter(
            QgsProcessingParameterEnum("STRENGTH", "Strength", STRENGTH_NAMES,
                                       defaultValue=STRENGTH_NAMES.index("medium"))
        )
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("RADIUS", "Radius (px; 0 = use strength)",
                                         QgsProcessingParameterNumber.Integer, 0)
        ))
        self.addParameter(
            QgsProcessingParameterNumber("ITERATIONS", "Iterations", QgsProcessingParameterNumber.Integer, 1,
                                         False, 1, 100)
        )
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("MEMORY_MB", "Memory budget (MB)", QgsProcessingParameterNumber.Integer,
                                         256, False, 1, 1_000_000)
        ))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Smoothed segments"))
        self.addOutput(QgsProcessingOutputNumber("SEGMENTS", "Number of segments"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.run_engine(
            blur_labels,
            feedback,
            input_path=self.raster_path(parameters, "INPUT", context),
            output_path=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            method=METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
            strength=STRENGTH_NAMES[self.parameterAsEnum(parameters, "STRENGTH", context)],
            radius=self.parameterAsInt(parameters, "RADIUS", context),
            iterations=self.parameterAsInt(parameters, "ITERATIONS", context),
            memory_mb=self.parameterAsInt(parameters, "MEMORY_MB", context),
        )
        return {"OUTPUT": result.output, "SEGMENTS": result.present}
