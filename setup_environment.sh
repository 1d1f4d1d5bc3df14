#!/usr/bin/env bash
# Set up whisper_lora_env: system tools (espeak-ng, sox, ffmpeg) where we may install them, then the
# Python packages from requirements.txt and whisper-lora itself. Safe to run again.
#   ./setup_environment.sh          what the toolkit needs, the server included
#   ./setup_environment.sh --dev    also the test tools (and Debian's chromium, for the web page test)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=whisper_lora_env
EXTRAS="[server]"  # the demo ends by printing `whisper-lora serve`: it must run after this script
TOOLS=(espeak-ng sox ffmpeg)
[ "${1:-}" = "--dev" ] && EXTRAS="[dev]" && TOOLS+=(chromium)

missing=()
for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: ${missing[*]} not found; the demo and the speech tests need espeak-ng, the web page test chromium (apt-get install ${missing[*]})" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || { echo "error: '$PYTHON -m venv' failed; on Debian: apt-get install python3-venv" >&2; exit 1; }
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q -e ".$EXTRAS"
echo "whisper-lora is installed in $VENV: activate it with 'source $VENV/bin/activate', then run 'whisper-lora --help'"
