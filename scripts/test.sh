#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: engine, algorithms in a real QGIS, qgis_process CLI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ "${MAP_SEGMENTER_SET_UP:-0}" = 1 ] || bash "$ROOT/scripts/setup.sh"  # on_qgis.sh has just run it
source "$ROOT/scripts/env.sh"
cd "$ROOT"
ruff check .
python -m pytest "$@"
