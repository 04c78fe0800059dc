#!/usr/bin/env bash
# README screenshots from the real QGIS desktop under Xvfb (see scripts/screenshots.py). Run setup.sh first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
unset QT_QPA_PLATFORM  # a real X display (Xvfb), not the offscreen platform
export MAP_SEGMENTER_ROOT="$ROOT"
timeout 300 xvfb-run -a -s "-screen 0 1600x1000x24" \
  qgis --nologo --noversioncheck --code "$ROOT/scripts/screenshots.py" 2>&1 \
  | grep -E "^screenshot|Error|Traceback|^  " || true
ls "$ROOT/docs/screenshots"
