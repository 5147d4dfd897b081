#!/usr/bin/env bash
# Install oldnew with its development tools and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One worker per core (the suite's tests are independent: each has its own workspace, memory
# and ports); OLDNEW_TEST_WORKERS=0 runs them in this process.
.venv/bin/python -m pytest -n "${OLDNEW_TEST_WORKERS:-auto}" "$@"
