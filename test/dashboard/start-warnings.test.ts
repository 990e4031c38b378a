import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { json, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

const WARNING = 'steps[1].analysis metric "accuracy": successCondition "result[0] >= 0" is true for every result of 0 or more: unless the query can return negative values (counts, rates, durations and ratios cannot), it passes every measurement';

test("the dashboard's rollout view shows the warnings its start gave, in the decision log, as isolated text", async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors, policyViolations } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;
  const id = await startRollout(server, [{ pause: {} }, { analysis: { metrics: [{ name: 'accuracy', provider: { builtin: { query: 'acc' } }, successCondition: 'result[0] >= 0' }] } }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'the pause at step 1');
  const detail = await json<{ warnings: string[] }>(await server.request('GET', `/api/rollouts/${id}`));
  assert.deepEqual(detail.warnings, [WARNING]);

  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  const row = page.locator('#rollout-detail tr', { hasText: 'successCondition "result[0] >= 0"' });
  await row.waitFor({ timeout: 5_000 });
  const cells = await row.locator('td').allInnerTexts();
  assert.deepEqual(cells.slice(1, 4), ['1', 'warning', 'warning']);
  assert.equal(await row.locator('td').nth(4).locator('bdi').innerText(), WARNING, 'the message as text in its own isolate');
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});
