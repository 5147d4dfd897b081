// The user agent the browser steps show the app: a desktop Chrome's, never "HeadlessChrome".
//
// A page that serves a bot something else than a person (user-agent cloaking) must be checked
// as a person sees it. No import of oldnew's tools: the Playwright config imports this file.
import { execFileSync } from 'node:child_process';

/** The Chrome major shown when the browser's own cannot be had. */
export const FALLBACK_MAJOR = '156';

/** Return Chromium's major version: from ``version`` ("156.0.8078.114"), else asking ``binary``
 * (``--version`` takes some 40 ms on the real binary), else FALLBACK_MAJOR. */
export function chromeMajor(version, binary) {
  let text = version ? String(version) : '';
  if (!/\d/.test(text) && binary) {
    try {
      text = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      text = '';
    }
  }
  const found = /(\d+)\.\d+/.exec(text);
  return found ? found[1] : FALLBACK_MAJOR;
}

/** Return a desktop Chrome user agent of that major (Chrome's own reduced form). */
export function desktopUserAgent(major) {
  return `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${major || FALLBACK_MAJOR}.0.0.0 Safari/537.36`;
}
