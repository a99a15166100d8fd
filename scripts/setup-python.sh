#!/usr/bin/env bash
# Create (or update) the Python venv the tests use, with uv for speed. Usage: setup-python.sh VENV
set -euo pipefail
venv=$1
here=$(cd "$(dirname "$0")/.." && pwd)
req="$here/tests/python/requirements.txt"
stamp="$venv/.rps-requirements.sha256"
want=$(cat "$req" "$here"/tests/python/requirements-*.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
if ! command -v uv >/dev/null && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "installing uv (pip)"; python3 -m pip install -q uv
fi
uv() { if command -v uv >/dev/null; then command uv "$@"; else python3 -m uv "$@"; fi; }
[[ -x "$venv/bin/python" ]] || uv venv -q --python python3 "$venv"
echo "installing test requirements into $venv"
args=(-r "$req")
for extra in "$here"/tests/python/requirements-*.txt; do [[ -f "$extra" ]] && args+=(-r "$extra"); done
uv pip install -q --python "$venv/bin/python" "${args[@]}"
echo "$want" > "$stamp"
