import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { pausedRolloutAndPage, rolloutState } from './dashboard-fixtures.ts';

/** The dashboard polls every 5 s. */
const POLL = 7_000;

/**
 * An action the server refused (a 503, say) disabled its button for the request, and the refresh
 * after it found the rollout unchanged and so left the detail view as it was: Roll back stayed
 * off for good (until the rollout changed), and the keyboard focus was lost to the page.
 */
test('after a refused Roll back the button is on again and keeps the focus, and a second try rolls back', async (t) => {
  const fixture = await pausedRolloutAndPage(t, 'accept');
  if (!fixture) return;
  const { server, id } = fixture;
  const { page, pageErrors, dialogs } = fixture.browser;

  let refused = 0;
  await page.route('**/rollback', (route) => {
    refused++;
    return route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { message: 'store busy, try again' } }) });
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  const rollback = page.locator('#rollout-detail button[data-action="rollback"]');
  assert.ok(await rollback.isEnabled());

  // By keyboard: focus the button, Enter, and the confirmation is accepted.
  await rollback.focus();
  await page.keyboard.press('Enter');
  await page.locator('#error', { hasText: 'store busy, try again' }).waitFor({ timeout: 5_000 });
  assert.equal(refused, 1);
  assert.equal(dialogs.length, 1);
  await page.unroute('**/rollback');
  // Over a poll: the state the server reports (a paused rollout can be rolled back) is the one shown.
  await page.waitForTimeout(POLL);
  assert.equal((await rolloutState(server, id)).phase, 'Paused');
  assert.ok(await rollback.isEnabled(), 'Roll back is on again once the refused request is over');
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.action), 'rollback', 'the focus is back on Roll back');
  // The failure still shows after the poll (it no longer hides itself after 6 s), naming what was not done, until dismissed.
  const message = page.locator('#error');
  assert.ok(await message.isVisible(), 'the failure is still shown');
  assert.equal((await message.innerText()).replace(/[\u2066-\u2069]/g, ''), `Roll back of ${id} was not done: store busy, try again Dismiss`);

  // Escape closes it wherever the focus is (here on Roll back, where it went back after the failure).
  await rollback.focus();
  await page.keyboard.press('Escape');
  await message.waitFor({ state: 'hidden', timeout: 2_000 });
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.action), 'rollback', 'the focus stays on Roll back after Escape');
  // Shown again (a second refused click), and dismissed by keyboard: the focus goes back to the button whose action failed, not to the page.
  await page.route('**/rollback', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { message: 'store busy, try again' } }) }));
  await page.keyboard.press('Enter');
  await message.waitFor({ state: 'visible', timeout: 5_000 });
  await page.unroute('**/rollback');
  await rollback.waitFor({ state: 'visible' });
  await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('#rollout-detail button[data-action="rollback"]')?.disabled, undefined, { timeout: 10_000 });
  await message.getByRole('button', { name: 'Dismiss' }).focus();
  await page.keyboard.press('Enter');
  await message.waitFor({ state: 'hidden', timeout: 2_000 });
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.action), 'rollback', 'the focus is back on Roll back after Dismiss');
  // Refused once more and left on screen: the try that succeeds takes it away (it stayed, saying
  // the rollout was not rolled back, over a rollout that was).
  await page.route('**/rollback', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { message: 'store busy, try again' } }) }));
  await page.keyboard.press('Enter');
  await message.waitFor({ state: 'visible', timeout: 5_000 });
  await page.unroute('**/rollback');
  await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('#rollout-detail button[data-action="rollback"]')?.disabled, undefined, { timeout: 10_000 });
  // Another action that succeeds (Resume) leaves it: the rollout is still not rolled back.
  await page.locator('#rollout-detail button[data-action="resume"]').click();
  await page.locator('#rollout-phase', { hasText: 'Progressing' }).waitFor({ timeout: 10_000 });
  assert.ok(await message.isVisible(), 'the Roll back failure stays after a Resume that succeeded');
  await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('#rollout-detail button[data-action="rollback"]')?.disabled, undefined, { timeout: 10_000 });
  await rollback.focus();
  await page.keyboard.press('Enter');
  await page.locator('#rollout-phase', { hasText: 'RolledBack' }).waitFor({ timeout: 10_000 });
  assert.ok(await message.isHidden(), 'the earlier failure is gone once the rollback is done');
  assert.equal(dialogs.length, 4);
  assert.deepEqual(pageErrors, []);
});
