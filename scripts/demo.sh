#!/usr/bin/env bash
# Install oldnew and run the bundled example end to end, with no API key:
# the scripted model plans three tasks, codes them in parallel, the validator catches a
# deliberately broken first attempt and the fixer repairs it, the run pauses with one
# configuration question, this script answers it as the person, and the run delivers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WS="${1:-$(mktemp -d /tmp/oldnew-todo.XXXXXX)}"
# Hermetic: the demo's memory (lessons, templates) lives in its own workspace, never in
# ~/.oldnew, so a second demo on this machine behaves exactly as the first.
export OLDNEW_MEMORY_PATH="$(realpath -m "$WS")/.oldnew/memory.sqlite"
MODEL="scripted:examples/todo/transcript.toml"
echo "== oldnew run: workspace $WS"
set +e
.venv/bin/oldnew run examples/todo/scope.md --workspace "$WS" --model "$MODEL"
code=$?
set -e
if [ "$code" -ne 3 ]; then
    echo "expected the run to pause for a person (exit 3), got $code" >&2
    exit 1
fi
echo
echo "== the person answers question T3-q1 with option 1 (~/.todo.json)"
.venv/bin/oldnew answer --workspace "$WS" T3-q1 1
echo
echo "== the delivered project: one commit per task, and its own tests"
git -C "$WS" log --oneline
(cd "$WS" && "$OLDPWD/.venv/bin/python" -m pytest -q -p no:cacheprovider)
echo
echo "report: $WS/.oldnew/report.md"
