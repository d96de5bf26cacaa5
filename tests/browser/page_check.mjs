// page_check: loads one page in headless Chromium and reports what went wrong in it.
//
//   node tests/browser/page_check.mjs <url or file path> [--wait-for <css selector>]
//        [--count <css selector>]... [--screenshot <png path>] [--timeout-ms N]
//
// Prints one JSON object on stdout:
//   {"ok": bool, "console_errors": [{type, text, location}], "page_errors": [...],
//    "failed_requests": [{url, error}], "counts": {"<selector>": n}, "title": "...",
//    "error": null or why the check itself could not finish}
// ok is true when the page loaded, the --wait-for selector appeared, and there were no console
// errors or warnings, no uncaught exceptions and no failed requests (HTTP >= 400 included).
//
// Exit status: 0 when the check ran (whatever it found), 2 when the browser could not start,
// 1 for a bad command line. The browser is $CHROMIUM or /usr/bin/chromium, run with
// --no-sandbox. Nothing can hang: every step has a deadline, and a watchdog kills the browser
// and exits when the whole run goes past --timeout-ms (plus a few seconds to close).
//
// Other node tests import checkPage() (and parseArgs()) instead of running a process.
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

import puppeteer from 'puppeteer-core';

const DEFAULT_TIMEOUT_MS = 30000;
const CLOSE_GRACE_MS = 5000;

// Thrown by checkPage() when the browser cannot be started (exit status 2).
export class BrowserStartError extends Error {}

function toUrl(target) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) && !/^[a-z]:[\\/]/i.test(target)) return target;
  return pathToFileURL(path.resolve(target)).href;
}

// `promise`, or a rejection "<what>: timed out (<limit>)" after `ms`.
function withDeadline(promise, ms, what, limit) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out (${limit})`)), Math.max(1, ms));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function killBrowser(browser) {
  try {
    const child = browser && browser.process();
    if (child && child.exitCode === null) child.kill('SIGKILL');
  } catch {
    // already gone
  }
}

// Loads `target` (a URL or a file path) and returns the result object described above.
// options: {waitFor, counts: [selectors], screenshot, timeoutMs, executablePath}.
// Throws BrowserStartError when the browser cannot start; every other problem is reported in
// the result.
export async function checkPage(target, options = {}) {
  const timeoutMs = options.timeoutMs > 0 ? options.timeoutMs : DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const executablePath = options.executablePath || process.env.CHROMIUM || '/usr/bin/chromium';
  const result = {
    ok: false,
    console_errors: [],
    page_errors: [],
    failed_requests: [],
    counts: {},
    title: '',
    error: null,
  };

  let browser;
  let launching;
  try {
    if (!fs.existsSync(executablePath)) throw new Error(`no browser at ${executablePath}`);
    launching = puppeteer.launch({
      executablePath,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
        '--no-default-browser-check',
        '--disable-extensions',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: left(),
      protocolTimeout: Math.max(1000, timeoutMs),
    });
    const limit = `--timeout-ms ${timeoutMs}`;
    browser = await withDeadline(launching, left(), 'starting the browser', limit);
  } catch (e) {
    // A launch that finishes after its deadline must not leave a browser behind.
    if (launching) launching.then(killBrowser, () => {});
    throw new BrowserStartError(`${executablePath}: ${e && e.message ? e.message : e}`);
  }

  try {
    const checking = run(browser, toUrl(target), options, result, left);
    await withDeadline(checking, left(), 'checking the page', `--timeout-ms ${timeoutMs}`);
  } catch (e) {
    result.error = e && e.message ? e.message : String(e);
  } finally {
    try {
      const limit = `${CLOSE_GRACE_MS} ms`;
      await withDeadline(browser.close(), CLOSE_GRACE_MS, 'closing the browser', limit);
    } catch {
      killBrowser(browser);
    }
  }
  result.ok =
    result.error === null &&
    result.console_errors.length === 0 &&
    result.page_errors.length === 0 &&
    result.failed_requests.length === 0;
  return result;
}

async function run(browser, url, options, result, left) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1366, height: 800, deviceScaleFactor: 1 });
  page.on('console', (msg) => {
    const type = msg.type();
    if (type !== 'error' && type !== 'warn' && type !== 'warning') return;
    const loc = msg.location() || {};
    result.console_errors.push({
      type: type === 'warn' ? 'warning' : type,
      text: msg.text(),
      location: loc.url ? `${loc.url}:${loc.lineNumber ?? 0}` : '',
    });
  });
  page.on('pageerror', (err) => {
    result.page_errors.push(err && err.message ? err.message : String(err));
  });
  page.on('requestfailed', (req) => {
    const failure = req.failure();
    result.failed_requests.push({ url: req.url(), error: failure ? failure.errorText : 'failed' });
  });
  page.on('response', (res) => {
    if (res.status() >= 400) {
      result.failed_requests.push({ url: res.url(), error: `HTTP ${res.status()}` });
    }
  });

  const response = await page.goto(url, { waitUntil: 'load', timeout: left() });
  if (response && !url.startsWith('file:') && response.status() >= 400) {
    throw new Error(`loading ${url}: HTTP ${response.status()}`);
  }
  result.title = await page.title();
  if (options.waitFor) {
    await page.waitForSelector(options.waitFor, { timeout: left() });
  }
  for (const selector of options.counts || []) {
    try {
      result.counts[selector] = await page.$$eval(selector, (els) => els.length);
    } catch (e) {
      result.counts[selector] = null;
      throw new Error(`counting '${selector}': ${e && e.message ? e.message : e}`);
    }
  }
  if (options.screenshot) {
    await page.screenshot({ path: options.screenshot, fullPage: true });
  }
}

// argv (without node and the script) -> {target, waitFor, counts, screenshot, timeoutMs}.
// Throws on a bad command line.
export function parseArgs(argv) {
  const out = { target: null, waitFor: null, counts: [], screenshot: null, timeoutMs: DEFAULT_TIMEOUT_MS };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--wait-for') out.waitFor = value();
    else if (a === '--count') out.counts.push(value());
    else if (a === '--screenshot') out.screenshot = value();
    else if (a === '--timeout-ms') {
      const n = Number(value());
      if (!Number.isFinite(n) || n <= 0) throw new Error('--timeout-ms needs a positive number');
      out.timeoutMs = n;
    } else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else if (out.target === null) out.target = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (out.target === null) throw new Error('a URL or file path is required');
  return out;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(
      `page_check: ${e.message}\nusage: node page_check.mjs <url or file> [--wait-for SEL] ` +
        '[--count SEL]... [--screenshot PNG] [--timeout-ms N]\n',
    );
    process.exit(1);
  }
  // The last line of defence against a hang: checkPage's own deadlines should always fire first.
  const watchdog = setTimeout(() => {
    process.stdout.write(
      JSON.stringify({
        ok: false,
        console_errors: [],
        page_errors: [],
        failed_requests: [],
        counts: {},
        title: '',
        error: `page_check: no result after ${args.timeoutMs + 2 * CLOSE_GRACE_MS} ms`,
      }) + '\n',
    );
    process.exit(0);
  }, args.timeoutMs + 2 * CLOSE_GRACE_MS);
  watchdog.unref();
  try {
    const result = await checkPage(args.target, args);
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  } catch (e) {
    if (e instanceof BrowserStartError) {
      process.stderr.write(`page_check: the browser could not start: ${e.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`page_check: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main();
}
