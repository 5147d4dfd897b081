// The Playwright config oldnew passes with --config to run a project's end-to-end tests:
//
//   E2E_DIR=<tree>/e2e BASE_URL=http://127.0.0.1:PORT CHROME_PATH=/usr/lib/chromium/chromium \
//   PLAYWRIGHT_JSON_OUTPUT_NAME=<out>/e2e.json [E2E_TIMEOUT_MS=15000] [E2E_OUTPUT_DIR=<out>/e2e] \
//   node <tools>/node_modules/@playwright/test/cli.js test --config <this file>
//
// A plain object (no import of @playwright/test: nothing above this file has node_modules).
// The system's Chromium, no browser download; one worker, no retries, a timeout per test, the
// JSON reporter for the gate and the line reporter for the log.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromeMajor, desktopUserAgent } from './useragent.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const flags = JSON.parse(fs.readFileSync(path.join(here, 'chrome-flags.json'), 'utf8'));
const timeout = Number(process.env.E2E_TIMEOUT_MS) > 0 ? Number(process.env.E2E_TIMEOUT_MS) : 15000;
const chrome = process.env.CHROME_PATH || '/usr/lib/chromium/chromium';
// A desktop Chrome's user agent (CHROME_VERSION from the driver, else the binary's own): the
// app must not tell the tests from a person by "HeadlessChrome".
const userAgent = desktopUserAgent(chromeMajor(process.env.CHROME_VERSION, chrome));
const report = process.env.PLAYWRIGHT_JSON_OUTPUT_NAME
  ? path.resolve(process.env.PLAYWRIGHT_JSON_OUTPUT_NAME)
  : path.join(os.tmpdir(), 'oldnew-e2e.json');

export default {
  testDir: path.resolve(process.env.E2E_DIR || 'e2e'),
  // Playwright writes failure screenshots here; never next to this file (oldnew's package).
  outputDir: path.resolve(process.env.E2E_OUTPUT_DIR || path.join(os.tmpdir(), 'oldnew-e2e-results')),
  timeout,
  globalTimeout: Number(process.env.E2E_GLOBAL_TIMEOUT_MS) > 0 ? Number(process.env.E2E_GLOBAL_TIMEOUT_MS) : 0,
  expect: { timeout: Math.min(5000, timeout) },
  workers: 1,
  retries: 0,
  fullyParallel: false,
  forbidOnly: true,
  reporter: [['json', { outputFile: report }], ['line']],
  use: {
    baseURL: process.env.BASE_URL,
    headless: true,
    userAgent,
    actionTimeout: timeout,
    navigationTimeout: timeout,
    screenshot: 'only-on-failure',
    trace: 'off',
    video: 'off',
    launchOptions: {
      executablePath: chrome,
      args: flags.filter((f) => !f.startsWith('--headless')),
    },
  },
};
