#!/usr/bin/env bash
# Create the project's virtual environment with Python 3.11+, installing python3-venv if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
python=$1 venv=$2

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Dumont needs Python 3.11 or newer; $python is $("$python" --version 2>&1)." >&2
  echo "Run with PYTHON=/path/to/python3.11 make ..." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    apt_install "python3-venv" || apt_install "python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    "$python" -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
