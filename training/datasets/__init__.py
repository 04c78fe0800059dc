"""Training data: random windows of real rasters, tile shards with precomputed SLIC, a synthetic test source."""
