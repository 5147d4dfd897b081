#!/usr/bin/env bash
# Create .venv (if needed) and install oldnew with its development tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v git >/dev/null 2>&1; then
    echo "oldnew needs git: install it (Debian: apt-get install git)" >&2
    exit 2
fi
if ! command -v bwrap >/dev/null 2>&1; then
    # The sandbox that runs generated code uses bubblewrap; without it oldnew still runs,
    # and every validation says which sandbox layers were missing.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap \
            || echo "could not install bubblewrap: the sandbox runs without it" >&2
    else
        echo "bubblewrap is missing (Debian: apt-get install bubblewrap): the sandbox" \
            "that runs generated code will lack its network and filesystem layers" >&2
    fi
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
