#!/usr/bin/env bash
# Install oldnew with its development tools and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One worker per core and one more (the suite's tests are independent: each has its own
# workspace, memory and ports; many wait on sleeps and child processes, so the cores would idle
# a fifth of the time with one each); OLDNEW_TEST_WORKERS=0 runs them in this process. A file's
# tests run on one worker: a module's costly fixture (the web steps run for real, say) runs
# once, not per worker.
workers="${OLDNEW_TEST_WORKERS:-$(($(nproc) + 1))}"
.venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
