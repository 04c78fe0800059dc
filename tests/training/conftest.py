"""Training tests: need torch (each module skips with a clear reason without it); they import the training
package as ``map_segmenter.training`` (installed by scripts/setup.sh)."""
