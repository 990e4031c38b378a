import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import type { RolloutSummary } from '../../server/dashboard/ui/rollouts-view.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { json, serverWithFleet, startRollout } from './dashboard-fixtures.ts';

/**
 * The rollout list's "devices on candidate" column counted the devices meant to run the candidate,
 * whether or not it ever reached them: 150/307 for a rollout whose 150 were all unreachable, where
 * `rollout status` said 0/307 delivered. It shows what was delivered, as the CLI does.
 */
test('the rollout list counts the devices the rollout delivered to, not those it only assigned the candidate', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;
  // Both devices are assigned the candidate at once; neither ever connects, so nothing is delivered.
  const id = await startRollout(server, [{ setWeight: 100 }, { pause: {} }]);
  let summary: RolloutSummary | undefined;
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
    summary = await json<RolloutSummary>(await server.request('GET', `/api/rollouts/${id}`));
    if (summary.devices.candidate === 2) break;
  }
  assert.deepEqual([summary?.devices.candidate, summary?.devices.delivered, summary?.devices.total], [2, 0, 2], JSON.stringify(summary?.devices));

  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  const row = page.locator(`#rollouts tr[data-rollout="${id}"]`);
  await row.waitFor({ timeout: 5_000 });
  const headers = await page.locator('#rollouts thead th').allInnerTexts();
  const column = headers.indexOf('devices delivered');
  assert.ok(column >= 0, `a column says what it counts: ${headers.join(' | ')}`);
  assert.equal(await row.locator('td').nth(column).innerText(), '0/2 delivered');
  assert.deepEqual(pageErrors, []);
});
