#!/usr/bin/env bash
# Install oldnew with its development tools and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One worker per core (the suite's tests are independent: each has its own workspace, memory
# and ports); OLDNEW_TEST_WORKERS=0 runs them in this process. A file's tests run on one
# worker: a module's costly fixture (the web steps run for real, say) runs once, not per worker.
.venv/bin/python -m pytest -n "${OLDNEW_TEST_WORKERS:-auto}" --dist loadfile "$@"
