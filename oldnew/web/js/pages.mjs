// oldnew's page step: each named page in Chromium, a full-page screenshot, axe-core, page errors.
//
//   node pages.mjs --base http://127.0.0.1:PORT --pages /,/about --out DIR [--timeout-ms 15000]
//
// Writes DIR/pages.json and DIR/screenshots/<slug>.png. Whatever a page does (never loads,
// throws, answers 404, crashes the browser) is that page's data; the exit code is 0 whenever
// the step ran, non-zero (one line on stderr) only when it could not run at all.
import fs from 'node:fs';
import path from 'node:path';
import {
  CANNOT_RUN, pageStepOptions, chromeMajor, chromePath, cut, desktopUserAgent, flagsForPlaywright, number,
  eachPage, pageList, pageUrl, requireTool, toolFile, why, within,
} from './common.mjs';

const MAX_MESSAGES = 50;
const MAX_NODES = 20;
const MAX_SHOT_HEIGHT = 10000;
const SETTLE_MS = 3000;
const VIEWPORT = { width: 1280, height: 800 };

const opts = pageStepOptions('pages.mjs', 15000);
const timeout = number(opts, 'timeout-ms');
const executablePath = chromePath();
const { chromium } = requireTool('playwright-core');
const axeSource = fs.readFileSync(toolFile('axe-core/axe.min.js'), 'utf8');
const out = path.resolve(opts.out);
fs.mkdirSync(path.join(out, 'screenshots'), { recursive: true });

let browser = null;
let userAgent = desktopUserAgent();

async function launch() {
  return within(
    chromium.launch({ executablePath, args: flagsForPlaywright(), timeout, headless: true }),
    timeout + 1000,
    'launching Chromium',
  );
}

async function ensureBrowser() {
  if (browser && browser.isConnected()) return browser;
  if (browser) await browser.close().catch(() => {});
  browser = await launch();
  return browser;
}

function violations(result) {
  return (result?.violations || []).map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.slice(0, MAX_NODES).map((n) => ({
      target: n.target.map((t) => (Array.isArray(t) ? t.join(' >> ') : t)).join(' >> '),
      failureSummary: n.failureSummary || '',
      html: cut(n.html, 300),
    })),
    nodes_total: v.nodes.length,
  }));
}

async function checkPage(ctx, url, slug, record) {
  const page = await within(ctx.newPage(), timeout, 'opening a page');
  page.setDefaultTimeout(timeout);
  page.on('pageerror', (err) => {
    if (record.page_errors.length < MAX_MESSAGES) record.page_errors.push(cut(err.stack || String(err)));
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error' && record.console_errors.length < MAX_MESSAGES) {
      const where = msg.location();
      const at = where && where.url ? ` (${where.url}:${where.lineNumber + 1})` : '';
      record.console_errors.push(cut(`${msg.text()}${at}`));
    }
  });
  let crashed = null;
  const crash = new Promise((_, reject) => {
    page.on('crash', () => {
      crashed = 'the page crashed the browser tab';
      reject(new Error(crashed));
    });
  });
  crash.catch(() => {});
  const step = (promise, what) => within(Promise.race([promise, crash]), timeout + 1000, what);

  const response = await step(page.goto(url, { timeout, waitUntil: 'load' }), `loading ${url}`);
  record.status = response ? response.status() : null;
  // A page that fetches its data after load (a single-page app) gets a moment to show it: the
  // screenshot and axe see what a person would, not the empty shell.
  await step(page.waitForLoadState('networkidle', { timeout: SETTLE_MS }), 'settling').catch(() => {});
  const shot = path.join('screenshots', `${slug}.png`);
  // Nothing below runs in the page's own JavaScript world: the page could redefine whatever
  // it finds there (window.axe, Element.prototype) and pass every check. The browser's
  // protocol measures it, and axe runs in a world of its own that shares only the DOM.
  const cdp = await step(ctx.newCDPSession(page), 'opening the browser protocol');
  try {
    await inspect(page, cdp, step, shot, record);
  } finally {
    await within(cdp.detach(), 5000, 'closing the browser protocol').catch(() => {});
  }
  if (record.status !== null && record.status >= 400) {
    record.error = `the page answered HTTP ${record.status}: it is not served at this path`;
  }
  if (crashed) record.error = crashed;
}

async function inspect(page, cdp, step, shot, record) {
  // The whole page, up to MAX_SHOT_HEIGHT: an endless page would cost the browser gigabytes.
  const metrics = await step(cdp.send('Page.getLayoutMetrics'), 'measuring the page');
  const height = Math.ceil(metrics.cssContentSize?.height || metrics.contentSize?.height || 0);
  const shotOptions = height > MAX_SHOT_HEIGHT
    ? { clip: { x: 0, y: 0, width: VIEWPORT.width, height: MAX_SHOT_HEIGHT }, fullPage: true }
    : { fullPage: true };
  await step(page.screenshot({ path: path.join(out, shot), timeout, ...shotOptions }), 'the screenshot');
  record.screenshot = shot;
  record.screenshot_clipped = height > MAX_SHOT_HEIGHT;
  record.axe = violations(await runAxe(cdp, step));
}

/** Return the value of ``expression`` in the world ``contextId``; throw what it threw. */
async function evaluateIn(cdp, contextId, expression, step, what) {
  const done = await step(
    cdp.send('Runtime.evaluate', { expression, contextId, awaitPromise: true, returnByValue: true, silent: true }),
    what,
  );
  if (done.exceptionDetails) {
    const details = done.exceptionDetails;
    throw new Error(`${what} threw: ${details.exception?.description || details.text || 'an exception'}`);
  }
  return done.result?.value;
}

/** Run axe-core on the main frame in an isolated world (the page's globals cannot reach it). */
async function runAxe(cdp, step) {
  const { frameTree } = await step(cdp.send('Page.getFrameTree'), 'finding the main frame');
  const { executionContextId } = await step(
    cdp.send('Page.createIsolatedWorld', { frameId: frameTree.frame.id, worldName: 'oldnew-axe' }),
    'opening a world for axe-core',
  );
  await evaluateIn(cdp, executionContextId, `${axeSource}\n;void 0`, step, 'loading axe-core');
  return evaluateIn(
    cdp,
    executionContextId,
    "axe.run(document, { resultTypes: ['violations'] }).then((r) => ({ violations: r.violations }))",
    step,
    'axe-core',
  );
}

async function onePage(pagePath, slug) {
  const url = pageUrl(opts.base, pagePath);
  const record = {
    path: pagePath, url, status: null, screenshot: null, screenshot_clipped: false, axe: [], page_errors: [],
    console_errors: [], error: null, duration_ms: 0,
  };
  const started = Date.now();
  let ctx = null;
  try {
    const b = await ensureBrowser();
    ctx = await within(
      b.newContext({ bypassCSP: true, viewport: VIEWPORT, userAgent }),
      timeout,
      'opening a browser context',
    );
    await checkPage(ctx, url, slug, record);
  } catch (err) {
    record.error = why(err);
    if (browser && !browser.isConnected()) record.error += ' (the browser crashed)';
  } finally {
    if (ctx) await within(ctx.close(), 5000, 'closing the page').catch(async () => {
      // A context that does not close: the browser is stuck; the next page gets a new one.
      const stuck = browser;
      browser = null;
      if (stuck) await within(stuck.close(), 5000, 'closing Chromium').catch(() => {});
    });
    record.duration_ms = Date.now() - started;
  }
  return record;
}

const pages = pageList(opts.pages);
const started = Date.now();
try {
  browser = await launch();
} catch (err) {
  process.stderr.write(`Chromium could not start (${executablePath}): ${why(err)}\n`);
  process.exit(CANNOT_RUN);
}
const version = browser.version();
// What a person's Chrome of this version sends: a page must not serve the checks another page.
userAgent = desktopUserAgent(chromeMajor(version));
const header = { base: opts.base, browser: version };
await eachPage(pages, path.join(out, 'pages.json'), header, started, onePage);
if (browser) await within(browser.close(), 5000, 'closing Chromium').catch(() => {});
process.exit(0);
