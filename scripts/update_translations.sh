#!/usr/bin/env bash
# Regenerate the translation template i18n/map_segmenter.ts from the code (every string passed to tr() or
# QCoreApplication.translate), merge new strings into each language file i18n/map_segmenter_<lang>.ts keeping
# their translations, and compile those into the .qm files the plugin loads for the user's QGIS locale.
# Needs Debian's pyqt5-dev-tools (pylupdate5) and qttools5-dev-tools (lrelease), which scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SOURCES=$(git ls-files 'algorithms/*.py' 'processing_provider/*.py')
pylupdate5 -noobsolete $SOURCES -ts i18n/map_segmenter.ts 2>/dev/null
for ts in i18n/map_segmenter_*.ts; do
  [ -e "$ts" ] || continue
  pylupdate5 -noobsolete $SOURCES -ts "$ts" 2>/dev/null
  /usr/lib/qt5/bin/lrelease -silent "$ts" -qm "${ts%.ts}.qm"
done
