import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { pausedRolloutAndPage } from './dashboard-fixtures.ts';
import { until } from '../helpers/until.ts';

/**
 * An action's request has no timeout (a slow rollback is never reported as failed), and while it
 * was out the page said nothing of it; a refresh that redrew the view meanwhile (the rollout moved
 * on) turned Roll back on again, inviting a second click for the same rollback.
 */
test('while a Roll back is out the page says "Rolling back…" and keeps every action off, even when the view is redrawn meanwhile', async (t) => {
  const fixture = await pausedRolloutAndPage(t, 'accept');
  if (!fixture) return;
  const { server, id } = fixture;
  const { page, pageErrors } = fixture.browser;

  // The rollback request is held at the browser until the test lets it go on to the server.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held = 0;
  await page.route('**/rollback', async (route) => {
    held++;
    await released;
    await route.continue();
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  const rollback = page.locator('#rollout-detail button[data-action="rollback"]');
  const pending = page.locator('#action-pending');
  await rollback.click();
  await pending.waitFor({ timeout: 5_000 });
  assert.equal(await pending.innerText(), 'Rolling back…');
  // The page says so as it sends the request; the route here hears of it a little later.
  await until('the rollback request to be held', async () => (held === 1 ? true : undefined), 5_000);

  // Someone else resumes the rollout: the next poll redraws the view with the new phase.
  assert.equal((await server.request('POST', `/api/rollouts/${id}/resume`)).status, 200);
  await page.locator('#rollout-phase:not(:has-text("Paused"))').waitFor({ timeout: 15_000 });
  assert.equal(await pending.innerText(), 'Rolling back…', 'still said after the redraw');
  for (const action of ['rollback', 'abort', 'promote-full']) {
    const button = page.locator(`#rollout-detail button[data-action="${action}"]`);
    if ((await button.count()) > 0) assert.equal(await button.isEnabled(), false, `${action} is off while the rollback is out`);
  }

  release();
  await page.locator('#rollout-phase', { hasText: 'RolledBack' }).waitFor({ timeout: 15_000 });
  await pending.waitFor({ state: 'detached', timeout: 5_000 });
  assert.equal(held, 1, 'one rollback request');
  assert.deepEqual(pageErrors, []);
});
