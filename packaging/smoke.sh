#!/usr/bin/env bash
# Smoke-test the frozen app: run its --self-test headless and report the exit status.
#     packaging/smoke.sh [path/to/executable]      (default: dist/DGKIP Studio/DGKIP Studio)
# Exit status: the self-test's (0 = pass); 2 when there is no frozen app to test.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="${1:-$ROOT/dist/DGKIP Studio/DGKIP Studio}"
case "$(uname -s)" in
    Darwin) [ -d "$ROOT/dist/DGKIP Studio.app" ] && [ $# -eq 0 ] \
                && APP="$ROOT/dist/DGKIP Studio.app/Contents/MacOS/DGKIP Studio" ;;
    MINGW*|MSYS*|CYGWIN*) [ $# -eq 0 ] && APP="$APP.exe" ;;
esac

if [ ! -x "$APP" ]; then
    echo "smoke.sh: no frozen app at '$APP' - build it first with 'make frozen'" >&2
    exit 2
fi

echo "smoke.sh: '$APP' --self-test (QT_QPA_PLATFORM=offscreen)"
start=$(date +%s)
QT_QPA_PLATFORM=offscreen timeout "${DGKIP_SMOKE_TIMEOUT:-900}" "$APP" --self-test
rc=$?
seconds=$(( $(date +%s) - start ))
if [ "$rc" -eq 0 ]; then
    echo "smoke.sh: PASS - self-test exited 0 after ${seconds}s"
elif [ "$rc" -eq 124 ]; then
    echo "smoke.sh: FAIL - self-test timed out after ${seconds}s" >&2
else
    echo "smoke.sh: FAIL - self-test exited $rc after ${seconds}s" >&2
fi
exit "$rc"
