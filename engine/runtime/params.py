"""Parameter names, as the algorithms declare them and the engine's messages name them.

One place for both sides: an algorithm declares and reads ``params.SIEVE``, and the engine's checks and messages
name the same constant, so the two cannot drift apart. The names are the keys of scripts, Modeler models
(processing_provider/models/*.model3) and ``qgis_process`` command lines: a value here never changes.
"""

# shared
INPUT = "INPUT"
OUTPUT = "OUTPUT"
FEATURES = "FEATURES"
SEED = "SEED"
MEMORY_MB = "MEMORY_MB"
SCHEDULER = "SCHEDULER"
ITERATIONS = "ITERATIONS"
METHOD = "METHOD"  # blur: majority or gaussian; knn_refine: the formulation, graph or global
SEGMENTS = "SEGMENTS"  # how many segments: K of a segmentation, or what merge keeps
IMAGE = "IMAGE"  # the raster the segments were made from (statistics, render)
SEGMENT_COUNT = "SEGMENT_COUNT"  # an output: segments present

# segmenter:kmeans and segmenter:cnn (algorithms/base.py's SegmentationAlgorithm)
BANDS = "BANDS"
K_MIN = "K_MIN"
K_MAX = "K_MAX"
REFERENCE = "REFERENCE"
EXTENT = "EXTENT"
PIXEL_SIZE = "PIXEL_SIZE"
MASK = "MASK"

# segmenter:kmeans
BLOCK_SIZE = "BLOCK_SIZE"

# segmenter:cnn
MODEL = "MODEL"
MODEL_PATH = "MODEL_PATH"
DEVICE = "DEVICE"
TILE_SIZE = "TILE_SIZE"
BATCH_SIZE = "BATCH_SIZE"
THREADS = "THREADS"
PROVIDER = "PROVIDER"  # an output: the ONNX Runtime execution provider used

# segmenter:blur
STRENGTH = "STRENGTH"
RADIUS = "RADIUS"

# segmenter:render
PALETTE = "PALETTE"
NAMES = "NAMES"
OPACITY = "OPACITY"
COMPOSITE = "COMPOSITE"
QUICKLOOK = "QUICKLOOK"

# segmenter:statistics
SIEVE = "SIEVE"
POLYGONS = "POLYGONS"
REPORT = "REPORT"

# segmenter:knn_refine
LABELS = "LABELS"
NEIGHBORS = "NEIGHBORS"
TEMPERATURE = "TEMPERATURE"
MIX = "MIX"
SPATIAL_WEIGHT = "SPATIAL_WEIGHT"
INDEX_SIZE = "INDEX_SIZE"
