"""``segmenter:knn_refine``: latent KNN soft refinement of a label raster in feature space."""

from qgis.core import QgsProcessingParameterRasterLayer

from ..engine.knn_refine import refine_knn
from .base import POSTPROCESSING, SegmenterAlgorithm


class KnnRefineAlgorithm(SegmenterAlgorithm):
    GROUP = POSTPROCESSING
    ID = "knn_refine"

    def displayName(self):  # noqa: N802 - QGIS API
        return self.tr("Latent KNN refinement")

    def shortDescription(self):  # noqa: N802 - QGIS API
        return self.tr("Refines segments by the blocks that look most alike (nearest neighbours in feature space).")

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return self.tr(
            "Refines a segmentation by letting each block follow the segments of the blocks that look most like "
            "it (its nearest neighbours among the block descriptors), not only the nearest segment centre. Cleans "
            "speckle and mislabelled blocks without blurring boundaries.\n\n"
            "Every block starts with a soft choice between segments: half its own segment, half a score from its "
            "distances to the segment centres. A seeded sample of blocks (the index) is drawn over the whole "
            "raster; then, Iterations times, every block's soft choice moves towards the mean of its nearest "
            "neighbours in the index. Each block finally takes the segment with the highest score; when that "
            "changes, the block's pixels of its old segment take the new one. The result does not depend on the "
            "memory budget.\n\n"
            "Segments: a label raster (segments 1..K, 0 = nodata), e.g. the Segments of K-Means segmentation. "
            "Segment centres are read from its metadata, or computed from the features when it has none.\n"
            "Features: the Block descriptors (K-Means) or Embeddings (CNN) saved by the same segmentation run. "
            "They must cover the same area in the same CRS.\n"
            "Neighbours: how many similar blocks each block looks at.\n"
            "Temperature: softness of the scores from the distances to the centres, relative to the spread of "
            "the features; higher = softer.\n"
            "Mix per iteration: how far each iteration moves towards the neighbours (0 = not at all, 1 = all the "
            "way).\n"
            "Iterations: number of refinement steps (0 keeps the segments as they are).\n"
            "Spatial weight: how much the position of a block counts beside its appearance; 0 = appearance "
            "only, higher = neighbours closer on the map.\n"
            "Random seed: seed of the index sample; the same seed gives the same result.\n"
            "Index size (advanced): number of blocks in the index; more = closer to using every block, slower.\n"
            "Memory budget (advanced): working memory for the windows the raster is processed in.\n\n"
            "Refined segments: a label raster on the input's grid with the same segments, colours and names. "
            "Nodata stays nodata. Needs SciPy."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add(QgsProcessingParameterRasterLayer("LABELS", self.tr("Segments")),
                 self.tr("A label raster, e.g. the Segments of K-Means segmentation (or their smoothed version)."))
        self.add(QgsProcessingParameterRasterLayer("FEATURES", self.tr("Features (of the same segmentation run)")),
                 self.tr("The Block descriptors or Embeddings output of the segmentation that made Segments."))
        self.integer("NEIGHBORS", self.tr("Neighbours"), 12, 1, 1000,
                     self.tr("How many similar blocks each block looks at."))
        self.decimal("TEMPERATURE", self.tr("Temperature (relative)"), 2.0, 1e-6, 1e6,
                     self.tr("Softness of the scores from the distances to the segment centres; higher = softer."))
        self.decimal("MIX", self.tr("Mix per iteration"), 0.65, 0.0, 1.0,
                     self.tr("How far each iteration moves towards the neighbours (0 = not at all, 1 = all the "
                             "way)."))
        self.integer("ITERATIONS", self.tr("Iterations"), 2, 0, 100,
                     self.tr("Number of refinement steps; 0 keeps the segments."))
        self.decimal("SPATIAL_WEIGHT", self.tr("Spatial weight"), 0.08, 0.0, 1e6,
                     self.tr("Weight of a block's position beside its appearance; 0 = appearance only."))
        self.integer("SEED", self.tr("Random seed"), 0, 0,
                     help_text=self.tr("Seed of the index sample: the same seed gives the same result."))
        self.integer("INDEX_SIZE", self.tr("Index size (blocks)"), 120_000, 1, 100_000_000,
                     self.tr("Number of blocks in the index; more = closer to using every block, slower."),
                     advanced=True)
        self.add_memory()
        self.add_label_output(self.tr("Refined segments"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.run_engine(
            refine_knn,
            feedback,
            labels_path=self.raster_path(parameters, "LABELS", context),
            features_path=self.raster_path(parameters, "FEATURES", context),
            output_path=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            neighbors=self.parameterAsInt(parameters, "NEIGHBORS", context),
            temperature=self.parameterAsDouble(parameters, "TEMPERATURE", context),
            mix=self.parameterAsDouble(parameters, "MIX", context),
            iterations=self.parameterAsInt(parameters, "ITERATIONS", context),
            spatial_weight=self.parameterAsDouble(parameters, "SPATIAL_WEIGHT", context),
            seed=self.parameterAsInt(parameters, "SEED", context),
            index_size=self.parameterAsInt(parameters, "INDEX_SIZE", context),
            memory_mb=self.parameterAsInt(parameters, "MEMORY_MB", context),
        )
        return self.label_outputs(context, result.output, result.segments)
