#!/usr/bin/env bash
# Install oldnew with its development tools and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One worker per core (the suite's tests are independent: each has its own workspace, memory
# and ports); OLDNEW_TEST_WORKERS=0 runs them in this process. Tests of one xdist_group run on
# one worker (they share a costly module fixture: the web steps run once).
.venv/bin/python -m pytest -n "${OLDNEW_TEST_WORKERS:-auto}" --dist loadgroup "$@"
