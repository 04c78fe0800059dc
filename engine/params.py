"""Parameter names, as the algorithms declare them and the engine's messages name them.

One place for both sides: an algorithm declares and reads ``params.SIEVE``, and the engine's ``checks`` name the
same constant in their messages, so the two cannot drift apart. (So far the post-processing steps statistics and
knn_refine use them.)
"""

# shared
INPUT = "INPUT"
OUTPUT = "OUTPUT"
FEATURES = "FEATURES"
SEED = "SEED"
SEGMENTS = "SEGMENTS"
MEMORY_MB = "MEMORY_MB"
SCHEDULER = "SCHEDULER"
ITERATIONS = "ITERATIONS"
SEGMENT_COUNT = "SEGMENT_COUNT"  # an output: segments present

# segmenter:statistics
IMAGE = "IMAGE"
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
METHOD = "METHOD"  # the formulation: graph or global

# segmenter:blur (METHOD: majority or gaussian)
STRENGTH = "STRENGTH"
RADIUS = "RADIUS"

# segmenter:render (IMAGE as for statistics)
PALETTE = "PALETTE"
OPACITY = "OPACITY"
COMPOSITE = "COMPOSITE"
QUICKLOOK = "QUICKLOOK"
NAMES = "NAMES"
