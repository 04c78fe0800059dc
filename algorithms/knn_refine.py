"""``segmenter:knn_refine``: latent KNN soft refinement of a label raster in feature space."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..engine.knn_refine import refine_knn
from .base import SegmenterAlgorithm

HELP = """Refines a segmentation by letting each block follow the labels of the blocks that look most like it (its nearest neighbours in feature space), not only the nearest centre. Cleans speckle and mislabelled blocks without blurring boundaries.

Each cell of the FEATURES grid is a point: its features, its position, and its label (the first non-zero pixel of its block in LABELS). It starts with a soft label: half its own label, half a softmax over the distances to the segment centres. A seeded index of up to INDEX_SIZE points, drawn over the whole raster in proportion to each segment's size, is built once; then, ITERATIONS times, every soft label moves towards the mean soft label of its NEIGHBORS nearest index points. Each block takes the segment with the highest final score; when that differs from its label, the block's pixels of its old label take the new one (pixels of other ids, such as boundaries drawn by segmenter:blur, keep theirs). Results do not depend on MEMORY_MB.

LABELS: a label raster (ids 1..K, 0 = nodata), e.g. the OUTPUT of segmenter:kmeans. Segment centres are read from its metadata, or computed as each segment's mean features when it has none.
FEATURES: the FEATURES output of the same segmentation run (Float32, one cell per block). It must lie on LABELS' grid: same extent and CRS, cells of the block size.
NEIGHBORS: number of nearest index points each block looks at. The table of the index points' neighbours (INDEX_SIZE x NEIGHBORS x 4 bytes) must fit in 256 MB, or in half of MEMORY_MB when that is more.
TEMPERATURE: softness of the distance-to-centre scores. It is relative to the spread of the features (squared distances are divided by the mean squared distance of the index points to their own centre), so it does not depend on feature units. Higher = softer.
MIX: how far each iteration moves towards the neighbours (0 = not at all, 1 = all the way).
ITERATIONS: number of refinement steps (0 keeps LABELS).
SPATIAL_WEIGHT: weight of the position (x, y in -1..1 over the raster) beside the features, on the same relative scale; 0 = features only, higher = neighbours closer in space.
SEED: seed of the index sample; same seed, same result.
INDEX_SIZE (advanced): number of index points; more = closer to using every block, slower.
MEMORY_MB (advanced): working-memory budget for the windows the raster is processed in.

Output: a label raster on LABELS' grid with the same K, centres, colours and names. Pixels that are 0 in LABELS stay 0; blocks without valid features keep their labels. Needs SciPy (scipy.spatial)."""


class KnnRefineAlgorithm(SegmenterAlgorithm):
    GROUP = ("postprocessing", "Post-processing")
    ID = "knn_refine"
    TITLE = "Latent KNN refinement"
    SUMMARY = "Refines segment labels by their nearest neighbours in feature space."
    HELP = HELP

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterRasterLayer("LABELS", "Segment labels"))
        self.addParameter(QgsProcessingParameterRasterLayer("FEATURES", "Features (FEATURES of the same run)"))
        self.addParameter(number("NEIGHBORS", "Neighbours", number.Integer, 12, False, 1, 1000))
        self.addParameter(number("TEMPERATURE", "Temperature (relative)", number.Double, 2.0, False, 1e-6, 1e6))
        self.addParameter(number("MIX", "Mix per iteration", number.Double, 0.65, False, 0.0, 1.0))
        self.addParameter(number("ITERATIONS", "Iterations", number.Integer, 2, False, 0, 100))
        self.addParameter(number("SPATIAL_WEIGHT", "Spatial weight", number.Double, 0.08, False, 0.0, 1e6))
        self.addParameter(number("SEED", "Seed", number.Integer, 0, False, 0))
        self.addParameter(self.advanced(number("INDEX_SIZE", "Index size (points)", number.Integer, 120_000,
                                               False, 1, 100_000_000)))
        self.addParameter(self.advanced(number("MEMORY_MB", "Memory budget (MB)", number.Integer, 256, False, 1,
                                               1_000_000)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Refined segments"))
        self.addOutput(QgsProcessingOutputNumber("SEGMENTS", "Number of segments"))

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
        return {"OUTPUT": result.output, "SEGMENTS": result.segments}
