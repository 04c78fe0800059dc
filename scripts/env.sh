# Source me: the environment the scripts, tests and benchmarks run QGIS in (headless, isolated profile).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QGIS_PLUGINPATH="$ROOT/.build/plugins" QGIS_CUSTOM_CONFIG_PATH="$ROOT/.build/qgis-profile"
export QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
export PATH="$ROOT/.venv/bin:$PATH"
