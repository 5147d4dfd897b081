// oldnew's Lighthouse step: every named page on one shared Chrome, offline, tuned settings.
//
//   node lighthouse.mjs --base http://127.0.0.1:PORT --pages /,/about --out DIR [--timeout-ms 60000]
//
// Keeps each full report as DIR/lighthouse/<slug>.json and writes DIR/lighthouse.json: the four
// category scores and the weighted audits scoring under 0.9 of each page. A page Lighthouse
// cannot audit is that page's "error"; the exit code is non-zero (one line on stderr) only when
// the step could not run at all.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  CANNOT_RUN, pageStepOptions, CHROME_FLAGS, chromePath, cut, freshProfile, importTool, number, pageList, pageUrl,
  toolFile, why, within, eachPage,
} from './common.mjs';

const CATEGORIES = ['performance', 'accessibility', 'best-practices', 'seo'];
const FAILING = 0.9;
const UNSCORED = new Set(['informative', 'notApplicable', 'manual', 'error']);
const MAX_ITEMS = 5;

const opts = pageStepOptions('lighthouse.mjs', 60000);
const timeout = number(opts, 'timeout-ms');
const chromePathValue = chromePath();
const lighthouse = (await importTool('lighthouse')).default;
const chromeLauncher = await importTool('chrome-launcher');
const version = JSON.parse(fs.readFileSync(toolFile('lighthouse/package.json'), 'utf8')).version;
const out = path.resolve(opts.out);
fs.mkdirSync(path.join(out, 'lighthouse'), { recursive: true });

// Research for issue 15: these settings took each page from ~9 s to ~6 s, still scoring 1.00
// on a well-formed page; bf-cache alone costs ~0.4 s and says nothing about a fresh MVP.
const CONFIG = {
  extends: 'lighthouse:default',
  settings: {
    onlyCategories: CATEGORIES,
    pauseAfterFcpMs: 250,
    pauseAfterLoadMs: 250,
    networkQuietThresholdMs: 250,
    cpuQuietThresholdMs: 250,
    skipAudits: ['bf-cache'],
    maxWaitForFcp: Math.min(30000, Math.round(timeout / 2)),
    maxWaitForLoad: Math.min(35000, Math.round(timeout * 0.6)),
  },
};

let chrome = null;
let profile = null;

/** Return Chromium's last words at start (its stderr, as chrome-launcher kept it). */
function lastWords(launcher) {
  try {
    const text = fs.readFileSync(path.join(launcher.userDataDir, 'chrome-err.log'), 'utf8');
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
    return lines.length ? `: ${cut(lines[lines.length - 1], 300)}` : '';
  } catch {
    return '';
  }
}

async function launch() {
  profile = freshProfile();
  // chrome-launcher only polls the debugging port (up to maxConnectionRetries): a Chromium that
  // exits at once is seen here, when it exits, not after the whole wait.
  let exited = () => {};
  const early = new Promise((_, reject) => { exited = reject; });
  early.catch(() => {});
  const launcher = new chromeLauncher.Launcher(
    {
      chromePath: chromePathValue,
      chromeFlags: [...CHROME_FLAGS, `--user-data-dir=${profile}`],
      userDataDir: false,
      logLevel: 'silent',
      handleSIGINT: false,
      maxConnectionRetries: 100,
    },
    {
      spawn: (...spawnArgs) => {
        const child = spawn(...spawnArgs);
        child.once('error', (err) => exited(err));
        child.once('exit', (code, signal) => {
          exited(new Error(`it exited at once (${signal || `exit code ${code}`})${lastWords(launcher)}`));
        });
        return child;
      },
    },
  );
  try {
    await within(Promise.race([launcher.launch(), early]), Math.min(timeout, 30000), 'launching Chromium');
  } catch (err) {
    await within(Promise.resolve(launcher.kill()), 5000, 'stopping Chromium').catch(() => {});
    throw err;
  }
  chrome = launcher;
}

async function stopChrome() {
  const old = chrome;
  chrome = null;
  if (old) await within(Promise.resolve(old.kill()), 5000, 'stopping Chromium').catch(() => {});
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  profile = null;
}

function items(audit) {
  // Elements (selector and snippet) where the audit points at some, else what it lists.
  return (audit.details?.items || [])
    .map((item) => (item.node
      ? { selector: item.node.selector || '', snippet: cut(item.node.snippet || '', 300) }
      : { selector: '', snippet: cut(item.description || item.source || item.url || '', 300) }))
    .filter((item) => item.selector || item.snippet)
    .slice(0, MAX_ITEMS);
}

/** Return the weighted audits of the four categories scoring under 0.9 (none informational). */
function failingAudits(lhr) {
  const byId = new Map();
  for (const name of CATEGORIES) {
    for (const ref of lhr.categories?.[name]?.auditRefs || []) {
      const audit = lhr.audits?.[ref.id];
      if (!audit || !(ref.weight > 0) || UNSCORED.has(audit.scoreDisplayMode)) continue;
      if (audit.score === null || audit.score >= FAILING) continue;
      const known = byId.get(ref.id);
      if (known) {
        if (!known.categories.includes(name)) known.categories.push(name);
        continue;
      }
      byId.set(ref.id, {
        id: ref.id,
        title: audit.title,
        description: audit.description,
        score: audit.score,
        displayValue: audit.displayValue || '',
        categories: [name],
        items: items(audit),
      });
    }
  }
  return [...byId.values()];
}

async function answers(url) {
  // Lighthouse waits for ever on a navigation whose server never answers (Page.navigate has no
  // timeout of its own): a page that does not even send its headers is not audited.
  const ms = Math.min(15000, Math.round(timeout / 3));
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(ms), redirect: 'follow' });
  } catch (err) {
    const reason = err?.name === 'TimeoutError' ? `did not answer within ${ms} ms` : `could not be fetched: ${why(err.cause || err)}`;
    throw new Error(`${url} ${reason}`);
  }
  await response.body?.cancel().catch(() => {});
}

async function onePage(pagePath, slug) {
  const url = pageUrl(opts.base, pagePath);
  const record = { path: pagePath, url, report: null, scores: null, audits: [], warnings: [], error: null, duration_ms: 0 };
  const started = Date.now();
  try {
    await answers(url);
    if (!chrome) await launch();
    const run = lighthouse(url, { port: chrome.port, output: 'json', logLevel: 'error', disableFullPageScreenshot: true }, CONFIG);
    run.catch(() => {}); // past the timeout, Chrome is killed under it: that rejection is expected
    const result = await within(run, timeout, `Lighthouse on ${url}`);
    if (!result) throw new Error('Lighthouse returned no result');
    const rel = path.join('lighthouse', `${slug}.json`);
    fs.writeFileSync(path.join(out, rel), result.report);
    const { lhr } = result;
    record.report = rel;
    record.scores = Object.fromEntries(CATEGORIES.map((c) => [c, lhr.categories?.[c]?.score ?? null]));
    record.audits = failingAudits(lhr);
    record.warnings = (lhr.runWarnings || []).map((w) => cut(w, 500));
    if (lhr.runtimeError) record.error = `${lhr.runtimeError.code}: ${cut(lhr.runtimeError.message, 500)}`;
  } catch (err) {
    record.error = why(err);
    // Whatever state Chrome is in after a failed audit (hung, crashed), the next page gets a new one.
    await stopChrome();
  }
  record.duration_ms = Date.now() - started;
  return record;
}

const pages = pageList(opts.pages);
const started = Date.now();
try {
  await launch();
} catch (err) {
  await stopChrome();
  process.stderr.write(`Chromium could not start (${chromePathValue}): ${why(err)}\n`);
  process.exit(CANNOT_RUN);
}
const header = { base: opts.base, lighthouse: version };
await eachPage(pages, path.join(out, 'lighthouse.json'), header, started, onePage);
await stopChrome();
process.exit(0);
