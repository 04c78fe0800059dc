"""``segmenter:merge``: re-cuts a segmentation to fewer segments along the merge tree it carries."""

from ..engine.runtime import params
from ..engine.steps.merge import merge_labels
from .base import LabelStepAlgorithm


class MergeAlgorithm(LabelStepAlgorithm):
    ID = "merge"
    ENGINE = staticmethod(merge_labels)

    def texts(self):
        title = self.tr("Merge segments (re-cut K)")
        summary = self.tr("Cuts a segmentation to fewer segments, merging the most alike first, without running it "
                          "again.")
        return title, summary, self.tr(
            "Cuts a segmentation to fewer kinds of region without segmenting again: the segments merge in the "
            "order of the merge tree the segmentation wrote (Ward's linkage on its segment centres, weighted by "
            "their sizes: the two most alike segments merge first). Fast: a lookup table applied to the raster "
            "window by window.\n\n"
            "Segments: a label raster written by K-Means segmentation or CNN segmentation (or smoothed, refined or "
            "merged after them: they keep the tree).\n"
            "Number of segments: how many segments to keep, from 2 to the input's K. Cutting a merged result "
            "again gives the same as cutting the original.\n"
            "Memory budget (advanced): working memory; the result does not depend on it.\n"
            "Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; "
            "its workers process the windows, with the same result. Empty = this computer.\n\n"
            "Merged segments: a label raster on the input's grid, segments 1..K ordered by their darkest member, "
            "styled, with the merged centres and the rest of the tree in its metadata, so it chains into Smooth "
            "segments, Latent KNN refinement, Render segments and Segment statistics."
        )

    def io_texts(self):
        return (self.tr("A label raster made by K-Means segmentation or CNN segmentation (or a step after them)."),
                self.tr("Merged segments"))

    def add_method_settings(self):
        self.integer(params.SEGMENTS, self.tr("Number of segments"), 4, 2, 254,
                     self.tr("How many segments to keep: 2 to the input's K."))
        self.add_memory_and_scheduler()

    def method_arguments(self, parameters, context):
        return dict(
            segments=self.parameterAsInt(parameters, params.SEGMENTS, context),
            **self.memory_and_scheduler(parameters, context),
        )
