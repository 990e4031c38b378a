import { createRequire } from 'node:module';
import { after, type TestContext } from 'node:test';
import type * as Playwright from 'playwright-core';
import type { Page } from 'playwright-core';

// Required, not imported: an ES import of this CommonJS package first scans its sources for
// export names (0.89 CPU-s to load it here, against 0.54 s by require), in every dashboard test.
const { chromium } = createRequire(import.meta.url)('playwright-core') as typeof Playwright;
import { deferCleanup } from '../helpers/cleanup.ts';
import { engineMissing, findExecutable } from '../helpers/engines.ts';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** What a dashboard page did that tests assert on. */
export interface DashboardPage {
  page: Page;
  /** Messages of the dialogs it opened (each answered as `answerDialogs` says when it opens). */
  dialogs: string[];
  answerDialogs: 'accept' | 'dismiss';
  pageErrors: string[];
  /** Console messages about something its Content-Security-Policy blocked. */
  policyViolations: string[];
}

/**
 * One Chromium per test process, launched by the first page a test opens and closed after the
 * process's last test: a launch costs about 1.8 CPU-s of Chromium and Playwright (its pages in a
 * context each cost a tenth of that), and a group of dashboard files opened a score of them. A
 * browser that crashed or was closed is launched again.
 */
let shared: Promise<Playwright.Browser> | undefined;

function sharedBrowser(executablePath: string): Promise<Playwright.Browser> {
  const current = shared;
  if (current) {
    return current.then(
      (open) => (open.isConnected() ? open : ((shared = undefined), sharedBrowser(executablePath))),
      () => ((shared = undefined), sharedBrowser(executablePath)),
    );
  }
  shared = chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  return shared;
}

/**
 * Set by the hook below. Node 20 runs a top-level after() once the tests registered so far are
 * done, which in a group can be before its next file is even imported: a test after that gets a
 * browser of its own, closed with it, as nothing would close a shared one.
 */
let processEnded = false;

after(async () => {
  processEnded = true;
  const open = await shared?.catch(() => undefined);
  shared = undefined;
  await open?.close();
});

/**
 * A headless Debian Chromium page in a context of its own, closed after the test; undefined (the test skipped, or failed
 * under CI) when there is no Chromium.
 */
export async function openDashboardPage(t: TestContext, answerDialogs: 'accept' | 'dismiss'): Promise<DashboardPage | undefined> {
  const executablePath = findExecutable(['/usr/bin/chromium', 'chromium', 'chromium-browser']);
  if (!executablePath) {
    engineMissing(t, 'Chromium', 'no chromium binary (apt-get install chromium)');
    return undefined;
  }
  let browser: Playwright.Browser;
  if (processEnded) {
    const own = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
    deferCleanup(t, () => own.close());
    browser = own;
  } else {
    browser = await sharedBrowser(executablePath);
  }
  // A context of its own (cookies, storage, cache), as a browser of its own would give.
  const context = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  deferCleanup(t, () => context.close());
  const page = await context.newPage();
  // A file run straight from its source (node --import tsx --test FILE) keeps function names by
  // wrapping them in esbuild's __name(fn, "name"), which page.evaluate then sends to the page too.
  await page.addInitScript('globalThis.__name ??= (target) => target;');
  const opened: DashboardPage = { page, dialogs: [], answerDialogs, pageErrors: [], policyViolations: [] };
  page.on('dialog', (dialog) => {
    opened.dialogs.push(dialog.message());
    void dialog[opened.answerDialogs]();
  });
  page.on('pageerror', (error) => opened.pageErrors.push(error.message));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) opened.policyViolations.push(message.text());
  });
  return opened;
}

/**
 * Resolves once the dashboard's next refresh has drawn its views: the next rollouts-list answer,
 * then the moment the views take to draw. Views are morphed (only what changed is touched), so a
 * refresh that changed nothing leaves no DOM mutation to wait for.
 */
export async function afterNextRefresh(page: Page): Promise<void> {
  await page.waitForResponse((response) => /\/api\/rollouts\?/.test(response.url()), { timeout: 30_000 });
  await page.waitForTimeout(300);
}
