// Shared by oldnew's web step scripts: arguments, oldnew's own npm tools, Chrome, timeouts.
//
// The scripts live in oldnew's package (no node_modules above them), so every npm package is
// loaded from oldnew's tools folder by path, never by a bare import.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TOOLS_MODULES = process.env.OLDNEW_WEB_TOOLS || path.join(HERE, '..', 'tools', 'node_modules');
export const CHROME_FLAGS = JSON.parse(fs.readFileSync(path.join(HERE, 'chrome-flags.json'), 'utf8'));
export const SYSTEM_CHROMIUM = '/usr/lib/chromium/chromium';

// A tool's promise that settles after its step timed out (Lighthouse on a killed Chrome) must
// not end the step: the page already has its error, and the JSON is still written.
process.on('unhandledRejection', (err) => {
  process.stderr.write(`ignored after its step ended: ${why(err)}\n`);
});

export { chromeMajor, desktopUserAgent } from './useragent.mjs';

/** The exit code of a step that could not run here: its browser or tools are missing or do
 * not start. The driver makes that step "not run" with the fix, never a finding for the
 * project. Exit 2 stays a bad command line (oldnew's own mistake). */
export const CANNOT_RUN = 3;

/** Exit 2 with one line on stderr: the step was called wrongly (oldnew's bug). */
export function cannotRun(reason) {
  process.stderr.write(`${String(reason).split('\n')[0]}\n`);
  process.exit(2);
}

/** Exit 3 with one line on stderr: what the step needs is missing or does not start here. */
export function cannotStart(reason) {
  process.stderr.write(`${String(reason).split('\n')[0]}\n`);
  process.exit(CANNOT_RUN);
}

const toolsRequire = createRequire(path.join(TOOLS_MODULES, 'oldnew-web-tools.cjs'));

/** Return a CommonJS package of oldnew's tools, or stop with the install command. */
export function requireTool(name) {
  try {
    return toolsRequire(name);
  } catch (err) {
    return cannotStart(`${name} is not installed in ${TOOLS_MODULES}: npm ci --prefix ${path.dirname(TOOLS_MODULES)} (${err.code || err.message})`);
  }
}

/** Return the path of a file of oldnew's tools (axe-core/axe.min.js), or stop. */
export function toolFile(name) {
  try {
    return toolsRequire.resolve(name);
  } catch (err) {
    return cannotStart(`${name} is not installed in ${TOOLS_MODULES}: npm ci --prefix ${path.dirname(TOOLS_MODULES)} (${err.code || err.message})`);
  }
}

/** Import an ES module package of oldnew's tools (lighthouse), or stop. */
export async function importTool(name) {
  return import(pathToFileURL(toolFile(name)).href);
}

/** Parse the command line; a bad one stops the step (it could not run). */
export function args(options) {
  try {
    return parseArgs({ options, allowPositionals: false }).values;
  } catch (err) {
    return cannotRun(`bad arguments: ${err.message}`);
  }
}

/** Parse a page step's command line (--base, --pages, --out, --timeout-ms), or stop. */
export function pageStepOptions(script, timeoutMs) {
  const opts = args({
    base: { type: 'string' },
    pages: { type: 'string', default: '/' },
    out: { type: 'string' },
    'timeout-ms': { type: 'string', default: String(timeoutMs) },
  });
  if (!opts.base || !opts.out) {
    process.stderr.write(`usage: node ${script} --base URL --pages /,/about --out DIR [--timeout-ms N]\n`);
    process.exit(2);
  }
  return opts;
}

/** Return the option as a positive number, or stop. */
export function number(values, name, fallback) {
  const raw = values[name] ?? fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) cannotRun(`--${name} must be a positive number, not ${raw}`);
  return value;
}

/** Return the named pages: "/,/about" -> ["/", "/about"] (each with a leading slash). */
export function pageList(raw) {
  const pages = String(raw || '/').split(',').map((p) => p.trim()).filter(Boolean);
  return pages.map((p) => (p.startsWith('/') ? p : `/${p}`));
}

/** Return a file name for each page: "/" -> "index", "/about" -> "about", unique. */
export function slugs(pages) {
  const seen = new Map();
  return pages.map((page) => {
    let base = page.replace(/[?#].*$/, '').replace(/^\/+|\/+$/g, '').replace(/[^A-Za-z0-9._-]+/g, '-');
    base = base.replace(/^[.-]+/, '') || 'index';
    const n = (seen.get(base) || 0) + 1;
    seen.set(base, n);
    return n === 1 ? base : `${base}-${n}`;
  });
}

/** Return the Chrome binary (CHROME_PATH, else Debian's), or stop when there is none. */
export function chromePath() {
  const chosen = process.env.CHROME_PATH || SYSTEM_CHROMIUM;
  try {
    fs.accessSync(chosen, fs.constants.X_OK);
  } catch {
    cannotStart(`Chromium is not installed at ${chosen}: apt-get install chromium (or set CHROME_PATH)`);
  }
  return chosen;
}

/** Return the flags without the headless ones (Playwright adds its own). */
export function flagsForPlaywright() {
  return CHROME_FLAGS.filter((f) => !f.startsWith('--headless'));
}

export class StepTimeout extends Error {}

/** Resolve with ``promise``, or reject with StepTimeout after ``ms`` ("what" names the step). */
export function within(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepTimeout(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/** Return an error's first line (what a finding shows). */
export function why(err) {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').filter(Boolean)[0] || String(err);
}

/** Cut ``text`` to ``n`` characters. */
export function cut(text, n = 2000) {
  const s = String(text ?? '');
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

/** Write ``data`` as JSON to ``file`` (its folder made), atomically. */
export function writeJson(file, data) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`);
  fs.renameSync(tmp, file);
}

/** Make a fresh user-data folder for one Chrome. */
export function freshProfile() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'oldnew-chrome-'));
}

/** Return ``base`` joined with ``page`` ("http://127.0.0.1:3000" + "/about"). */
export function pageUrl(base, page) {
  return new URL(page, base.endsWith('/') ? base : `${base}/`).href;
}

/**
 * Check each page in turn with `check(page, slug)`, writing `file` after every page: a step
 * killed from outside (the sandbox's timeout) still leaves the pages it checked, with
 * "complete": false. `header` goes first in the file; `started` is when the step began.
 */
export async function eachPage(pages, file, header, started, check) {
  const names = slugs(pages);
  const results = [];
  const save = (complete) => writeJson(file, {
    ...header, complete, duration_ms: Date.now() - started, pages: results,
  });
  for (let i = 0; i < pages.length; i += 1) {
    results.push(await check(pages[i], names[i]));
    save(i === pages.length - 1);
  }
  if (pages.length === 0) save(true);
}
