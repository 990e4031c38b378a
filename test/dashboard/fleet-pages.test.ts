import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';

/**
 * The Fleet view showed the first 500 devices by id and nothing else: in a larger fleet the
 * others (an unreachable device of a rollout among them) could not be found in the dashboard.
 * It pages through the fleet by id, and a refresh keeps the page shown.
 */
test('the Fleet view pages through a fleet of more than 500 devices, and a refresh stays on the page shown', { timeout: 90_000 }, async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const server = await startTestServer(t);
  if (!server) return;
  const { repos } = new FleetStore(server.server.ctx.store);
  const enrolledAt = new Date().toISOString();
  for (let n = 1; n <= 503; n++) {
    await repos.devices.insert({ id: `dev-${String(n).padStart(4, '0')}`, labels: {}, secretHash: 'h', tokenId: 't', enrolledAt, enrolledBy: 'test' });
  }
  const { page } = browser;
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  const fleet = page.locator('#fleet');
  const ids = async () => fleet.locator('tr[data-device]').evaluateAll((rows) => rows.map((row) => (row as HTMLElement).dataset.device!));
  await fleet.getByText('0 of 503 enrolled devices online (devices 1–500 by id)').waitFor({ timeout: 10_000 });
  assert.deepEqual((await ids()).slice(0, 1).concat((await ids()).slice(-1)), ['dev-0001', 'dev-0500']);

  await fleet.locator('button[data-page="next"]').click();
  await fleet.getByText('(devices 501–503 by id)').waitFor({ timeout: 10_000 });
  assert.deepEqual(await ids(), ['dev-0501', 'dev-0502', 'dev-0503']);
  assert.ok(await fleet.locator('button[data-page="next"]').isDisabled(), 'the last page');
  // Over a refresh (every 5 s): still the page shown.
  await page.waitForTimeout(6_000);
  assert.deepEqual(await ids(), ['dev-0501', 'dev-0502', 'dev-0503']);

  await fleet.locator('button[data-page="previous"]').click();
  await fleet.getByText('(devices 1–500 by id)').waitFor({ timeout: 10_000 });
  assert.ok(await fleet.locator('button[data-page="previous"]').isDisabled(), 'the first page');
  assert.deepEqual(browser.pageErrors, []);
});
