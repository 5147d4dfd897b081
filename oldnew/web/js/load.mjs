// oldnew's load step: autocannon on one endpoint for a bounded time; p50/p95/p99 and error rate.
//
//   node load.mjs --url URL [--method GET] [--body JSON] --duration S --connections N --out FILE
//
// The percentiles come from every response's own time (autocannon's are whole milliseconds
// and have no p95). Errors (refused, reset, timed out) and non-2xx answers are the error rate.
// The exit code is 0 whenever the run happened, non-zero (one line on stderr) when it could not.
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { args, cannotRun, number, requireTool, why, writeJson } from './common.mjs';

const MAX_SAMPLES = 2_000_000;
const MAX_ERROR_SAMPLES = 5;

const opts = args({
  url: { type: 'string' },
  method: { type: 'string', default: 'GET' },
  body: { type: 'string' },
  duration: { type: 'string', default: '5' },
  connections: { type: 'string', default: '10' },
  'timeout-s': { type: 'string', default: '10' },
  out: { type: 'string' },
});
if (!opts.url || !opts.out) {
  process.stderr.write('usage: node load.mjs --url URL [--method GET] [--body JSON] --duration S --connections N --out FILE\n');
  process.exit(2);
}
try {
  const parsed = new URL(opts.url);
  if (!['http:', 'https:'].includes(parsed.protocol)) throw new Error(`${parsed.protocol} is not HTTP`);
} catch (err) {
  cannotRun(`--url ${opts.url} is not an HTTP address: ${why(err)}`);
}
const method = opts.method.toUpperCase();
if (opts.body !== undefined) {
  try {
    JSON.parse(opts.body);
  } catch (err) {
    cannotRun(`--body is not JSON: ${why(err)}`);
  }
}
const duration = number(opts, 'duration');
const connections = Math.max(1, Math.round(number(opts, 'connections')));
const requestTimeout = number(opts, 'timeout-s');
const autocannon = requireTool('autocannon');

const latencies = new Float64Array(MAX_SAMPLES);
let samples = 0;
const errorSamples = [];

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round(sorted[i] * 1000) / 1000;
}

function oneRequest(agent) {
  // One request with Node's own client: the probe, and the loop for servers that close.
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const lib = opts.url.startsWith('https:') ? https : http;
    const req = lib.request(opts.url, {
      method, agent, timeout: requestTimeout * 1000,
      headers: opts.body !== undefined ? { 'content-type': 'application/json' } : {},
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({
        status: res.statusCode,
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
        closes: res.httpVersion === '1.0' || /close/i.test(res.headers.connection || ''),
      }));
      res.on('error', (err) => resolve({ error: err }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { timedOut: true })));
    req.on('error', (err) => resolve({ error: err }));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

function noteError(err) {
  const text = why(err);
  if (errorSamples.length < MAX_ERROR_SAMPLES && !errorSamples.includes(text)) errorSamples.push(text);
}

function runAutocannon() {
  return new Promise((resolve) => {
    let inst;
    const settle = (err, res) => resolve({ err, res });
    try {
      inst = autocannon({
        url: opts.url,
        method,
        body: opts.body,
        headers: opts.body !== undefined ? { 'content-type': 'application/json' } : {},
        connections,
        duration,
        timeout: requestTimeout,
      }, settle);
    } catch (err) {
      settle(err, null);
      return;
    }
    inst.on('response', (client, status, bytes, ms) => {
      if (samples < MAX_SAMPLES) latencies[samples++] = ms;
    });
    inst.on('reqError', noteError);
    // autocannon stops itself at the duration; this is the bound if it does not.
    const guard = setTimeout(() => inst.stop(), (duration + requestTimeout + 5) * 1000);
    guard.unref();
  });
}

async function runClosingLoop() {
  // autocannon's times are wrong against a server that closes every connection (HTTP/1.0,
  // Connection: close: they grow with its own queue), so such a server gets N sequential
  // clients of Node's own, a new connection a request, for the same duration.
  const counts = { requests: 0, errors: 0, timeouts: 0, non2xx: 0 };
  const statusCodeStats = {};
  const t0 = Date.now();
  const end = t0 + duration * 1000;
  const agent = new http.Agent({ keepAlive: false });
  async function client() {
    while (Date.now() < end) {
      const r = await oneRequest(agent);
      if (r.error) {
        counts.errors += 1;
        if (r.error.timedOut) counts.timeouts += 1;
        noteError(r.error);
        continue;
      }
      counts.requests += 1;
      if (samples < MAX_SAMPLES) latencies[samples++] = r.ms;
      if (r.status < 200 || r.status >= 300) counts.non2xx += 1;
      statusCodeStats[r.status] = { count: (statusCodeStats[r.status]?.count || 0) + 1 };
    }
  }
  await Promise.all(Array.from({ length: connections }, client));
  return {
    res: {
      requests: { total: counts.requests }, errors: counts.errors, timeouts: counts.timeouts,
      non2xx: counts.non2xx, statusCodeStats, duration: (Date.now() - t0) / 1000,
    },
  };
}

const started = Date.now();
const probe = await oneRequest(new http.Agent({ keepAlive: true }));
const client = !probe.error && probe.closes ? 'node-http (the server closes every connection)' : 'autocannon';
const result = client === 'autocannon' ? await runAutocannon() : await runClosingLoop();
if (result.err || !result.res) cannotRun(`autocannon could not run: ${why(result.err || 'no result')}`);
const r = result.res;
const sorted = latencies.slice(0, samples).sort();
const responses = r.requests?.total ?? samples;
const attempts = responses + r.errors;
const statusCodes = Object.fromEntries(Object.entries(r.statusCodeStats || {}).map(([k, v]) => [k, v.count]));
writeJson(path.resolve(opts.out), {
  url: opts.url,
  method,
  requests: attempts,
  responses,
  errors: r.errors,
  timeouts: r.timeouts,
  non2xx: r.non2xx,
  error_rate: attempts ? Math.round(((r.errors + r.non2xx) / attempts) * 1e6) / 1e6 : 1,
  p50_ms: quantile(sorted, 0.5),
  p95_ms: quantile(sorted, 0.95),
  p99_ms: quantile(sorted, 0.99),
  rps: Math.round(attempts / Math.max(r.duration, 0.001)),
  duration_s: r.duration,
  connections,
  status_codes: statusCodes,
  error_samples: errorSamples,
  client,
  wall_s: (Date.now() - started) / 1000,
});
process.exit(0);
