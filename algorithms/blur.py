"""``segmenter:blur``: smooths a label raster by a vote of each pixel's neighbourhood."""

from qgis.core import QgsProcessingParameterEnum

from ..engine.runtime import params
from ..engine.steps.blur import METHODS, STRENGTHS, blur_labels
from .base import LabelStepAlgorithm

STRENGTH_VALUES = list(STRENGTHS)  # option i of STRENGTH is STRENGTHS' key i; indices are what scripts pass


class BlurAlgorithm(LabelStepAlgorithm):
    ID = "blur"
    ENGINE = staticmethod(blur_labels)

    def texts(self):
        title = self.tr("Smooth segments (blur)")
        summary = self.tr("Smooths a segmentation by a majority or Gaussian vote of each pixel's neighbourhood.")
        return title, summary, self.tr(
            "Smooths a segmentation: every pixel takes the segment that wins a vote of its neighbourhood. Removes "
            "speckle and small islands and straightens ragged boundaries, keeping segments, grid and style.\n\n"
            "Segments: a label raster (one band of segment numbers, 0 = nodata), such as the result of K-Means "
            "segmentation or CNN segmentation. Nodata pixels stay nodata and do not vote.\n"
            "Method: Majority counts each segment's pixels in a square window around the pixel (the classic "
            "majority filter); Gaussian weights near pixels more than far ones (rounder boundaries).\n"
            "Strength: the size of the window, Low, Medium or High (High also runs twice). For segments made "
            "with 4 px blocks the windows are 5, 11 and 21 px wide; they grow with the block size the segments "
            "were made with.\n"
            "Radius (advanced): window half-width in pixels, one pass, instead of Strength; 0 = use Strength. "
            "At most 200 (100 for Gaussian).\n"
            "Iterations: how many times the smoothing is repeated; each repetition smooths further.\n"
            "Memory budget (advanced): working memory; the result does not depend on it.\n"
            "Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; "
            "its workers process the windows, with the same result. Empty = this computer.\n\n"
            "Ties: a pixel keeps its own segment when it is among the most voted; otherwise the lowest segment "
            "number among the most voted wins.\n\n"
            "Smoothed segments: a label raster on the input's grid with the same segments, colours, names and "
            "metadata, so Latent KNN refinement and Render segments work on it as on the input."
        )

    def io_texts(self):
        return self.tr("A label raster, e.g. the Segments of K-Means segmentation."), self.tr("Smoothed segments")

    def add_method_settings(self):
        self.add(QgsProcessingParameterEnum(params.METHOD, self.tr("Method"),
                                            [self.tr("Majority"), self.tr("Gaussian-weighted majority")],
                                            defaultValue=0),
                 self.tr("Majority: every pixel of the window counts the same. Gaussian-weighted: near pixels count "
                         "more (rounder boundaries)."))
        self.add(QgsProcessingParameterEnum(params.STRENGTH, self.tr("Strength"),
                                            [self.tr("Low"), self.tr("Medium"), self.tr("High")],
                                            defaultValue=STRENGTH_VALUES.index("medium")),
                 self.tr("Size of the voting window; High also smooths twice."))
        self.integer(params.RADIUS, self.tr("Radius (px; 0 = use strength)"), 0, 0, 200,
                     self.tr("Window half-width in pixels, one pass, instead of Strength."), advanced=True)
        self.integer(params.ITERATIONS, self.tr("Iterations"), 1, 1, 100,
                     self.tr("How many times the smoothing is repeated."))
        self.add_memory_and_scheduler()

    def method_arguments(self, parameters, context):
        return dict(
            method=METHODS[self.parameterAsEnum(parameters, params.METHOD, context)],
            strength=STRENGTH_VALUES[self.parameterAsEnum(parameters, params.STRENGTH, context)],
            radius=self.parameterAsInt(parameters, params.RADIUS, context),
            iterations=self.parameterAsInt(parameters, params.ITERATIONS, context),
            **self.memory_and_scheduler(parameters, context),
        )
