#!/usr/bin/env bash
# Install DGKIP Studio's desktop entry and icons (Linux, freedesktop.org menus and docks).
#
#   packaging/install_desktop_entry.sh [--system] [--exec PROGRAM] [--uninstall]
#
#   (default)    per user: ${XDG_DATA_HOME:-~/.local/share}/applications and .../icons/hicolor
#   --system     for all users: /usr/local/share/... (run as root)
#   --exec P     the program the menu entry starts. Default: the frozen app
#                dist/DGKIP Studio/DGKIP Studio when it is built, else the venv's `dgkip` script.
#   --uninstall  remove what an install put there
#
# The entry is validated with desktop-file-validate when that tool is installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ID="dgkip-studio"
TEMPLATE="$ROOT/resources/$ID.desktop"
ICONS="$ROOT/resources/icons"
SIZES="16 32 48 64 128 256 512"

data_dir="${XDG_DATA_HOME:-$HOME/.local/share}"
program=""
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --system) data_dir="/usr/local/share" ;;
        --exec) shift; program="${1:?--exec needs a program path}" ;;
        --exec=*) program="${1#--exec=}" ;;
        --uninstall) uninstall=1 ;;
        -h|--help) sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "install_desktop_entry.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

apps_dir="$data_dir/applications"
icon_dir="$data_dir/icons/hicolor"
entry="$apps_dir/$ID.desktop"

refresh_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$apps_dir" 2>/dev/null || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$icon_dir/index.theme" ]; then
        gtk-update-icon-cache -q -t -f "$icon_dir" 2>/dev/null || true
    fi
}

if [ "$uninstall" -eq 1 ]; then
    rm -f "$entry" "$icon_dir/scalable/apps/$ID.svg"
    for size in $SIZES; do rm -f "$icon_dir/${size}x${size}/apps/$ID.png"; done
    refresh_caches
    echo "install_desktop_entry.sh: removed $entry and its icons"
    exit 0
fi

if [ -z "$program" ]; then
    if [ -x "$ROOT/dist/DGKIP Studio/DGKIP Studio" ]; then
        program="$ROOT/dist/DGKIP Studio/DGKIP Studio"
    elif [ -x "$ROOT/.venv/bin/dgkip" ]; then
        program="$ROOT/.venv/bin/dgkip"
    else
        echo "install_desktop_entry.sh: nothing to launch yet - run 'make frozen' (packaged app)" \
             "or 'make setup' (development venv) first, or pass --exec PROGRAM" >&2
        exit 1
    fi
fi
case "$program" in /*) ;; *) program="$(cd "$(dirname "$program")" && pwd)/$(basename "$program")" ;; esac
[ -x "$program" ] || { echo "install_desktop_entry.sh: '$program' is not executable" >&2; exit 1; }

# Exec= quoting (Desktop Entry spec): an argument with reserved characters is double-quoted with
# \ " ` $ backslash-escaped; the value is then a string, so every backslash is doubled again;
# a literal % is written %%.
exec_arg="$program"
if [[ "$exec_arg" =~ [^A-Za-z0-9/_.+,=@-] ]]; then
    exec_arg="${exec_arg//\\/\\\\}"
    exec_arg="${exec_arg//\"/\\\"}"
    exec_arg="${exec_arg//\`/\\\`}"
    exec_arg="${exec_arg//\$/\\\$}"
    exec_arg="\"${exec_arg//\\/\\\\}\""
fi
exec_arg="${exec_arg//%/%%}"
try_exec="${program//\\/\\\\}"

mkdir -p "$apps_dir"
tmp_dir="$(mktemp -d "$apps_dir/.$ID.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT
tmp="$tmp_dir/$ID.desktop"   # desktop-file-validate insists on the .desktop name
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        Exec=*) printf 'Exec=%s %%f\n' "$exec_arg" ;;
        TryExec=*) printf 'TryExec=%s\n' "$try_exec" ;;
        *) printf '%s\n' "$line" ;;
    esac
done <"$TEMPLATE" >"$tmp"
chmod 644 "$tmp"
if command -v desktop-file-validate >/dev/null 2>&1; then
    # Errors fail the install and warnings are shown; hints are not (the menu categories
    # Science;Education; are both "main" categories on purpose).
    report="$(desktop-file-validate "$tmp" 2>&1 | grep -v ': hint: ' || true)"
    [ -n "$report" ] && printf '%s\n' "$report" | sed "s|$tmp_dir/||"
    if printf '%s\n' "$report" | grep -q ': error: '; then
        echo "install_desktop_entry.sh: desktop entry failed validation" >&2
        exit 1
    fi
else
    echo "install_desktop_entry.sh: desktop-file-validate not found; skipping validation"
fi
mv -f "$tmp" "$entry"
rm -rf "$tmp_dir"
trap - EXIT

for size in $SIZES; do
    install -D -m 644 "$ICONS/hicolor/${size}x${size}/apps/$ID.png" \
        "$icon_dir/${size}x${size}/apps/$ID.png"
done
install -D -m 644 "$ICONS/$ID.svg" "$icon_dir/scalable/apps/$ID.svg"
refresh_caches

echo "install_desktop_entry.sh: installed $entry"
echo "install_desktop_entry.sh: launches $program"
echo "install_desktop_entry.sh: icons in $icon_dir/{$(echo $SIZES | sed 's/\([0-9]*\)/\1x\1/g; s/ /,/g'),scalable}/apps"
