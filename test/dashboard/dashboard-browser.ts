import { createRequire } from 'node:module';
import type { TestContext } from 'node:test';
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
 * A headless Debian Chromium page, closed after the test; undefined (the test skipped, or failed
 * under CI) when there is no Chromium.
 */
export async function openDashboardPage(t: TestContext, answerDialogs: 'accept' | 'dismiss'): Promise<DashboardPage | undefined> {
  const executablePath = findExecutable(['/usr/bin/chromium', 'chromium', 'chromium-browser']);
  if (!executablePath) {
    engineMissing(t, 'Chromium', 'no chromium binary (apt-get install chromium)');
    return undefined;
  }
  const browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  deferCleanup(t, () => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
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
