#!/usr/bin/env bash
# Build the frozen desktop app with PyInstaller (one folder, windowed):
#     dist/DGKIP Studio/DGKIP Studio
# Uses the project venv (.venv, created with `make setup` when it is missing or lacks PyInstaller),
# then prints the build time and the bundle size. Extra arguments go to PyInstaller.
#
# Environment: DGKIP_VENV (default .venv), DGKIP_DIST_DIR (default dist),
#              DGKIP_WORK_DIR (default build/pyinstaller).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DGKIP_VENV:-$ROOT/.venv}"
DIST="${DGKIP_DIST_DIR:-$ROOT/dist}"
WORK="${DGKIP_WORK_DIR:-$ROOT/build/pyinstaller}"
PY="$VENV/bin/python"
APP_NAME="DGKIP Studio"

if ! "$PY" -c "import PyInstaller, dgkip_gui, engine" >/dev/null 2>&1; then
    echo "build.sh: setting up $VENV (make setup)"
    make -C "$ROOT" setup VENV="$VENV"
fi

echo "build.sh: PyInstaller $("$PY" -m PyInstaller --version) -> $DIST/$APP_NAME"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level "${DGKIP_PYINSTALLER_LOG:-WARN}" \
    --distpath "$DIST" --workpath "$WORK" "$@" "$ROOT/packaging/dgkip_studio.spec"
seconds=$(( $(date +%s) - start ))

bundle="$DIST/$APP_NAME"
[ -d "$DIST/$APP_NAME.app" ] && bundle="$DIST/$APP_NAME.app"
echo "build.sh: built $bundle"
printf 'build.sh: build time %dm%02ds, bundle size %s\n' $((seconds / 60)) $((seconds % 60)) \
    "$(du -sh "$bundle" | cut -f1)"
