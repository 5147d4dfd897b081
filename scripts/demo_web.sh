#!/usr/bin/env bash
# Install oldnew (and its web tools), then run the bundled web example end to end, with no API
# key: the scripted model scopes a small notes web app (python-web: pages plus a JSON API on
# the standard library), plans it in two phases, and codes the MVP; the MVP milestone's gates
# start the app in the sandbox and run the browser tests, axe, Lighthouse, a load run of each
# endpoint and a screenshot of each page. axe finds the MVP's deliberate fault (an image with
# no alt text), the fix task repairs it, main is tagged `mvp`, the preview starts, and the
# enhanced phase's task runs while it serves. This script then prints the preview URL, the
# Lighthouse scores, and the browser-test, accessibility and load results from the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WS="${1:-$(mktemp -d /tmp/oldnew-webapp.XXXXXX)}"
# Hermetic: the demo's memory (lessons, templates) lives in its own workspace, never in
# ~/.oldnew, so a second demo on this machine behaves exactly as the first.
export OLDNEW_MEMORY_PATH="$(realpath -m "$WS")/.oldnew/memory.sqlite"
MODEL="scripted:examples/webapp/transcript.toml"
echo "== oldnew run: workspace $WS"
.venv/bin/oldnew run examples/webapp/scope.md --workspace "$WS" --model "$MODEL"
echo
echo "== the delivered project: one commit per task, and the milestone tags"
git -C "$WS" log --oneline --decorate
echo
echo "== the web gates, from $WS/.oldnew/report.json"
# The report's web section: {"preview": url, "lighthouse": {page: {category: score}},
# "e2e": {...}, "axe": {...}, "load": [...], "screenshots": [...]}.
.venv/bin/python - "$WS/.oldnew/report.json" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1], encoding="utf-8"))
web = report.get("web")
if not web:
    sys.exit("the report has no web section: the web gates did not run")


def shown(value):
    if isinstance(value, dict):
        return ", ".join(f"{k} {shown(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(shown(v) for v in value) or "none"
    return str(value)


low = []
print(f"preview:     {web.get('preview') or 'not serving'}")
print("lighthouse:")
for page, scores in (web.get("lighthouse") or {}).items():
    # Scores as Lighthouse gives them (0 to 1) or as percentages: shown as percentages.
    pct = {c: round(s * 100 if s <= 1 else s) for c, s in scores.items() if s is not None}
    print(f"  {page:10} " + "  ".join(f"{c} {v}" for c, v in pct.items()))
    low += [f"{page} {c} {v}" for c, v in pct.items() if v < 90]
print(f"browser tests: {shown(web.get('e2e') or 'not run')}")
print(f"accessibility: {shown(web.get('axe') or 'not run')}")
for run in web.get("load") or []:
    print(f"load:        {shown(run)}")
for page, path in (web.get("screenshots") or {}).items():
    print(f"screenshot:  {page}: {path}")
if low:
    sys.exit(f"Lighthouse scores under 90: {', '.join(low)}")
PY
echo
echo "== the preview, for you to open (stop it with: .venv/bin/oldnew preview --workspace $WS --stop)"
.venv/bin/oldnew preview --workspace "$WS"
echo
echo "report: $WS/.oldnew/report.md (with the screenshots)"
