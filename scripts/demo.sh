#!/usr/bin/env bash
# Set up (if needed) and segment the bundled Kampala sample with segmenter:kmeans through qgis_process.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
source "$ROOT/scripts/env.sh"
mkdir -p "$ROOT/out"
qgis_process.bin run segmenter:kmeans -- \
  INPUT="$ROOT/data/kampala_oam/kampala_oam_z21_mosaic.tif" SEGMENTS=8 BLOCK_SIZE=4 \
  OUTPUT="$ROOT/out/kampala_segments.tif"
echo
echo "Result: $ROOT/out/kampala_segments.tif (styled by out/kampala_segments.qml; open it in QGIS)"
