import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDashboardPage } from '../dashboard/dashboard-browser.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * The dashboard's "Roll back" was off on every rolled-back rollout, so an operator watching a
 * device refuse its baseline (its copy gone, and the server without its file for a while) had no button that
 * could bring it back. It is on while some device is not back, and a click sends it its baseline.
 */
test('dashboard: "Roll back" stays on while a device of a rolled-back rollout is not back, and a click brings it back', { timeout: 90_000 }, async (t) => {
  const browser = await openDashboardPage(t, 'accept');
  if (!browser) return;
  const { page, dialogs, pageErrors } = browser;
  const world = (await startRollbackWorld(t, ['click-1']))!;
  const { server, agents, proxy } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  const device = agents.get('click-1')!;

  // Promoted, "Roll back" says what it does beyond the rollout's devices; dismissed, nothing happens.
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator(`tr[data-rollout="${id}"]`).click();
  await page.locator('#rollout-phase', { hasText: 'Completed' }).waitFor({ timeout: 10_000 });
  browser.answerDialogs = 'dismiss';
  await page.locator('button[data-action="rollback"]').click();
  await waitFor(() => dialogs.length === 1, 5000, 'the confirmation');
  assert.equal(dialogs[0], `Roll back every device of ${id} to its baseline, make wine@1 production again, and send it to every other device running wine@2?`);
  browser.answerDialogs = 'accept';
  assert.equal((await world.rollout(id)).phase, 'Completed', 'dismissed: not rolled back');

  await rm(join(world.dataDir, 'click-1', 'models', device.slots.previous!.sha256), { recursive: true, force: true });
  proxy.missing.add(world.versions.get('1')!.files['model.onnx']!.sha256);
  await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=first`));
  assert.equal((await settled(world, id, 'RolledBack')).devices.refused, 1);
  proxy.missing.clear();

  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator(`tr[data-rollout="${id}"]`).click();
  await page.locator('#rollout-phase', { hasText: 'RolledBack' }).waitFor({ timeout: 10_000 });
  // Decisions taken after the last step (the promotion, the rollback) count in that step, as the
  // rollout's own line does: the log said step 3 of a 2-step rollout.
  const stepCount = await page.locator('.steps .step').count();
  const loggedSteps = (await page.locator('#decision-log table tr td:nth-child(2)').allTextContents()).map(Number);
  assert.ok(loggedSteps.length > 0 && stepCount > 0);
  assert.ok(loggedSteps.every((step) => step >= 1 && step <= stepCount), `steps ${loggedSteps.join(',')} of ${stepCount}`);
  assert.ok(loggedSteps.includes(stepCount), 'the decisions after the last step are in it');
  const button = page.locator('button[data-action="rollback"]');
  assert.equal(await button.isEnabled(), true, 'a device is not back: "Roll back" is on');
  await button.click();
  await waitFor(() => device.slots.active?.version === '1', 20_000, 'click-1 back on wine@1');
  assert.match(dialogs.at(-1) ?? '', /^ro-[0-9a-f]+ is RolledBack already\. Send the baseline again to the 1 device not back on it yet\?$/);
  await settled(world, id, 'RolledBack');
  await page.waitForFunction(() => (document.querySelector('button[data-action="rollback"]') as HTMLButtonElement | null)?.disabled === true, undefined, { timeout: 10_000 });
  assert.deepEqual(pageErrors, []);
});
