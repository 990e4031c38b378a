import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import type { Page } from 'playwright-core';

/** The console errors the page logs from now on. */
function consoleErrorsOf(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  return errors;
}

test('the dashboard loads without a failed request or console error: its favicon is inline, within its policy', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors, policyViolations } = browser;
  const server = await startTestServer(t);
  if (!server) return;
  const consoleErrors = consoleErrorsOf(page);
  // Favicon requests come from the browser, not the page: watch the network itself.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const failed: string[] = [];
  const requested: string[] = [];
  cdp.on('Network.requestWillBeSent', (event) => requested.push(event.request.url));
  cdp.on('Network.responseReceived', (event) => {
    if (event.response.status >= 400) failed.push(`${event.response.status} ${event.response.url}`);
  });

  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#fleet p', { hasText: 'enrolled devices online' }).waitFor({ timeout: 5_000 });
  await page.waitForTimeout(1_500);
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(consoleErrors, [], 'nothing logged an error');
  assert.deepEqual(requested.filter((url) => url.includes('favicon')), [], 'no favicon is fetched');
  assert.match((await page.locator('link[rel="icon"]').getAttribute('href')) ?? '', /^data:image\/svg\+xml,/);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, [], 'the inline icon is within img-src');
});

test('opened without a token the dashboard asks for one and sends the API nothing (no refusals logged), then shows the fleet once one is entered', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await startTestServer(t);
  if (!server) return;
  const consoleErrors = consoleErrorsOf(page);
  const apiCalls: string[] = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/api/')) apiCalls.push(request.url());
  });

  await page.goto(`${server.baseUrl}/dashboard/`);
  await page.locator('#error', { hasText: 'Enter a token to see the fleet.' }).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator('#live').textContent(), 'signed out');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token', 'the token field has the focus');
  // An empty submission asks again, without a request either.
  await page.locator('#token-form button[type="submit"]').click();
  await page.waitForTimeout(1_500);
  assert.deepEqual(apiCalls, [], 'no API request without a token');
  assert.deepEqual(consoleErrors, [], 'nothing logged an error');

  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('#fleet p', { hasText: 'enrolled devices online' }).waitFor({ timeout: 5_000 });
  assert.ok(apiCalls.length > 0, 'the entered token is used');
  assert.deepEqual(consoleErrors, [], 'nothing logged an error');
  assert.deepEqual(pageErrors, []);
});
