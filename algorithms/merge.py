"""``segmenter:merge``: re-cuts a segmentation to fewer segments along the merge tree it carries."""

from qgis.core import QgsProcessingParameterRasterLayer

from ..engine.merge import merge_labels
from .base import POSTPROCESSING, SegmenterAlgorithm


class MergeAlgorithm(SegmenterAlgorithm):
    GROUP = POSTPROCESSING
    ID = "merge"

    def displayName(self):  # noqa: N802 - QGIS API
        return self.tr("Merge segments (re-cut K)")

    def shortDescription(self):  # noqa: N802 - QGIS API
        return self.tr("Cuts a segmentation to fewer segments, merging the most alike first, without running it "
                       "again.")

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return self.tr(
            "Cuts a segmentation to fewer kinds of region without segmenting again: the segments merge in the "
            "order of the merge tree the segmentation wrote (Ward's linkage on its segment centres, weighted by "
            "their sizes: the two most alike segments merge first). Fast: a lookup table applied to the raster "
            "window by window.\n\n"
            "Segments: a label raster written by K-Means segmentation or CNN segmentation (or smoothed, refined or "
            "merged after them: they keep the tree).\n"
            "Number of segments: how many segments to keep, from 2 to the input's K. Cutting a merged result "
            "again gives the same as cutting the original.\n"
            "Memory budget (advanced): working memory; the result does not depend on it.\n\n"
            "Merged segments: a label raster on the input's grid, segments 1..K ordered by their darkest member, "
            "styled, with the merged centres and the rest of the tree in its metadata, so it chains into Smooth "
            "segments, Latent KNN refinement, Render segments and Segment statistics."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add(QgsProcessingParameterRasterLayer("INPUT", self.tr("Segments")),
                 self.tr("A label raster made by K-Means segmentation or CNN segmentation (or a step after them)."))
        self.integer("SEGMENTS", self.tr("Number of segments"), 4, 2, 254,
                     self.tr("How many segments to keep: 2 to the input's K."))
        self.add_memory()
        self.add_label_output(self.tr("Merged segments"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.run_engine(
            merge_labels,
            feedback,
            input_path=self.raster_path(parameters, "INPUT", context),
            output_path=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            segments=self.parameterAsInt(parameters, "SEGMENTS", context),
            memory_mb=self.parameterAsInt(parameters, "MEMORY_MB", context),
        )
        return self.label_outputs(context, result.output, result.present)
