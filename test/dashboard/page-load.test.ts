import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';

test('the dashboard loads without a failed request or console error: its favicon is inline, within its policy', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors, policyViolations } = browser;
  const server = await startTestServer(t);
  if (!server) return;
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
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
