#!/usr/bin/env bash
# Create .venv (if needed) and install oldnew with its development tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v git >/dev/null 2>&1; then
    echo "oldnew needs git: install it (Debian: apt-get install git)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
