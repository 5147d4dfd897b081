#!/usr/bin/env bash
# Install oldnew and run the bundled example whose project has dependencies, with no API key:
# the scripted model plans two tasks; the first declares markdown and tabulate (named by the
# scope, so approved) with their type stubs; oldnew locks them with uv into uv.lock, installs
# them into the project's own environment (from PyPI, or the index in OLDNEW_PACKAGE_INDEX),
# runs every gate against it, and delivers. Then `oldnew verify --fresh` rebuilds that
# environment from the lock in an empty cache and runs the gates again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WS="${1:-$(mktemp -d /tmp/oldnew-mdreport.XXXXXX)}"
# Hermetic: the demo's memory (lessons, templates) lives in its own workspace, never in
# ~/.oldnew, so a second demo on this machine behaves exactly as the first.
export OLDNEW_MEMORY_PATH="$(realpath -m "$WS")/.oldnew/memory.sqlite"
MODEL="scripted:examples/mdreport/transcript.toml"
echo "== oldnew run: workspace $WS"
.venv/bin/oldnew run examples/mdreport/scope.md --workspace "$WS" --model "$MODEL"
echo
echo "== the delivered project: one commit per task, its manifest and its lock"
git -C "$WS" log --oneline
git -C "$WS" ls-files
echo
echo "== oldnew verify --fresh: the environment rebuilt from uv.lock, every gate run again"
.venv/bin/oldnew verify --workspace "$WS" --fresh
echo
echo "== the tool itself, in that environment"
printf '# Notes\nsome words here\n## Later\nmore\n' > "$WS/.oldnew/sample.md"
(cd "$WS" && "$OLDPWD/.venv/bin/python" -m uv run --frozen --no-dev --quiet \
    python -m mdreport .oldnew/sample.md)
echo
echo "report: $WS/.oldnew/report.md"
