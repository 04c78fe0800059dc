#!/usr/bin/env bash
# Run the plugin's test suite (ruff, then pytest) against one Debian QGIS:
#   bash scripts/test_on_qgis.sh 3.22 [pytest args]   this machine's QGIS (Debian 12): the README's test command
#   bash scripts/test_on_qgis.sh 3.40 [pytest args]   Debian 13 (trixie): Python 3.13, numpy 2, GDAL 3.10
#   bash scripts/test_on_qgis.sh 3.44 [pytest args]   Debian 13 with trixie-backports: the long-term release
# 3.40 and 3.44 run in a cached Debian root (scripts/on_qgis.sh says how).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${1:-}"
shift || true
case "$VERSION" in
  3.22) exec bash "$ROOT/scripts/test.sh" "$@" ;;
  3.40|3.44)
    echo "Training tests (marker torch) run on the host's Python 3.11 only (bash scripts/test_on_qgis.sh 3.22):" \
      "PyTorch has no CPU wheel for Python 3.13 here; they are skipped below, saying so."
    exec bash "$ROOT/scripts/on_qgis.sh" "$VERSION" bash scripts/test.sh "$@" ;;
  *) echo "usage: bash scripts/test_on_qgis.sh 3.22|3.40|3.44 [pytest arguments]" >&2; exit 2 ;;
esac
