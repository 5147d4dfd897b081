#!/usr/bin/env bash
# Create .venv (if needed) and install oldnew with its development tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v git >/dev/null 2>&1; then
    echo "oldnew needs git: install it (Debian: apt-get install git)" >&2
    exit 2
fi
# System packages oldnew's sandbox and web gates use: bubblewrap (the sandbox that runs
# generated code) and Debian's Chromium (the browser, accessibility and Lighthouse gates; never
# a browser download). Without them oldnew still runs: every validation says which sandbox
# layers were missing, and each web gate says "not run" with the command that fixes it.
apt_missing=()
command -v bwrap >/dev/null 2>&1 || apt_missing+=(bubblewrap)
[ -x /usr/lib/chromium/chromium ] || [ -n "${OLDNEW_CHROMIUM:-}" ] || apt_missing+=(chromium)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq || echo "apt-get update failed: installing from the old lists" >&2
        for package in "${apt_missing[@]}"; do  # one at a time: one failure keeps the other
            apt-get install -y -qq --no-install-recommends "$package" \
                || echo "could not install $package: oldnew runs without it" >&2
        done
    else
        echo "missing: ${apt_missing[*]} (Debian: apt-get install --no-install-recommends" \
            "${apt_missing[*]}): without bubblewrap the sandbox lacks its network and" \
            "filesystem layers; without chromium the browser gates are not run" >&2
    fi
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# uv resolves and installs oldnew's dependencies (it is one of them: oldnew locks and installs
# generated projects with it), several times faster than pip on a fresh machine (the range is pyproject.toml's). Its index is
# PyPI unless UV_INDEX_URL (or UV_DEFAULT_INDEX) names another.
.venv/bin/python -m pip install --quiet --disable-pip-version-check 'uv>=0.9,<0.14'
.venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev]'
# oldnew's own web tools (Lighthouse, Playwright, axe-core, autocannon), pinned by the
# lockfile, into oldnew/web/tools/node_modules: never into a generated project. Installed again
# only when the lockfile is newer than the last install.
tools=oldnew/web/tools
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "node and npm are missing (Node 20 or newer): oldnew's web gates (browser tests," \
        "accessibility, Lighthouse, load) will say not run; install them, then: npm ci" \
        "--prefix $tools" >&2
elif [ ! -f "$tools/node_modules/.package-lock.json" ] \
    || [ "$tools/package-lock.json" -nt "$tools/node_modules/.package-lock.json" ]; then
    npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error \
        || echo "could not install oldnew's web tools (npm ci --prefix $tools): the web" \
            "gates will say not run" >&2
fi
