import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { json, pausedRolloutAndPage, rolloutState } from './dashboard-fixtures.ts';

/** The dashboard polls every 5 s. */
const POLL_MS = 5_000;
const VIEWS = ['#rollouts', '#rollout-detail', '#fleet', '#models', '#sweep-chart'];
/** A message's text without the isolates around its user-provided parts. */
const plainText = (text: string) => text.replace(/[\u2066-\u2069]/g, '');

test('Sign out forgets the saved token: the views clear, nothing is polled, a reload asks for a token, and the button is offered again once one is entered', async (t) => {
  const fixture = await pausedRolloutAndPage(t, 'dismiss');
  if (!fixture) return;
  const { server } = fixture;
  const { page, pageErrors, policyViolations } = fixture.browser;
  const calls: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.startsWith('/api/')) calls.push(path);
  });
  const signOutButton = page.locator('#sign-out');
  const error = page.locator('#error');
  const saved = () => page.evaluate(() => localStorage.getItem('fleetprune.token'));

  // No token yet: nothing to sign out of.
  await page.goto(`${server.baseUrl}/dashboard/`);
  await error.filter({ hasText: 'Enter a token to see the fleet.' }).waitFor({ timeout: 5_000 });
  assert.equal(await signOutButton.isVisible(), false, 'no Sign out without a token');

  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });
  assert.ok(await signOutButton.isVisible(), 'Sign out is offered with a token in use');
  assert.equal(await saved(), ADMIN_TOKEN);

  await signOutButton.click();
  await error.filter({ hasText: 'Signed out: this browser keeps no token now. Enter a token to see the fleet.' }).waitFor({ timeout: 2_000 });
  for (const view of VIEWS) assert.equal(await page.locator(view).innerHTML(), '', `${view} is cleared`);
  assert.equal(await page.locator('#live').innerText(), 'signed out');
  assert.equal(await page.locator('#whoami').innerText(), '');
  assert.equal(await saved(), null, 'the token is no longer kept');
  assert.equal(await page.locator('#token').inputValue(), '');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token', 'the token field has the focus');
  assert.equal(await signOutButton.isVisible(), false);

  // Nothing is asked any more: no polling, no event stream.
  calls.length = 0;
  await page.waitForTimeout(POLL_MS + 1_000);
  assert.deepEqual(calls, [], 'no request after signing out');
  await page.reload();
  await error.filter({ hasText: 'Enter a token to see the fleet.' }).waitFor({ timeout: 5_000 });
  assert.deepEqual(calls, [], 'a reload has no token to send');

  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token-form button[type="submit"]').click();
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  assert.ok(await signOutButton.isVisible(), 'offered again');
  // Hidden once the whole refresh is in (the rollout is drawn before the other views are).
  await error.waitFor({ state: 'hidden', timeout: 5_000 });
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});

/**
 * Before, the action's own failure ("Roll back of … was not done: …") was shown and at once
 * replaced by the refresh after it, which found the token refused and said only that: the
 * operator was not told that the roll back they had confirmed never happened.
 */
test('an action refused for its token (revoked after the rollout was shown) signs out, saying which action was not done', async (t) => {
  const fixture = await pausedRolloutAndPage(t, 'accept');
  if (!fixture) return;
  const { server, id } = fixture;
  const { page, pageErrors, dialogs } = fixture.browser;
  const operator = await json<{ token: string; record: { id: string } }>(await server.request('POST', '/api/tokens', { json: { role: 'operator', label: 'pilot lead' } }));

  await page.goto(`${server.baseUrl}/dashboard/#token=${operator.token}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#whoami', { hasText: 'pilot lead (operator)' }).waitFor({ timeout: 5_000 });
  // The token is revoked between the confirmation and the request reaching the server.
  await page.route('**/rollback', async (route) => {
    const revoked = await server.request('DELETE', `/api/tokens/${operator.record.id}`);
    assert.equal(revoked.status, 204, await revoked.text());
    await route.continue();
  });
  await page.locator('#rollout-detail button[data-action="rollback"]').click();

  const error = page.locator('#error');
  await error.filter({ hasText: 'was not done' }).waitFor({ timeout: 5_000 });
  assert.equal(plainText(await error.innerText()), `Roll back of ${id} was not done: the server refused the token (revoked or mistyped). Enter a valid token to see the fleet.`);
  assert.equal(dialogs.length, 1, 'the roll back was confirmed');
  assert.equal(await page.locator('#live').innerText(), 'signed out');
  for (const view of VIEWS) assert.equal(await page.locator(view).innerHTML(), '', `${view} is cleared`);
  assert.equal(await page.evaluate(() => localStorage.getItem('fleetprune.token')), null, 'the refused token is forgotten');
  assert.equal((await rolloutState(server, id)).phase, 'Paused', 'the server did not roll back');
  // A refresh that was out when the action was refused settles within moments: it must not replace
  // the message with its own sign-out (that no poll follows is stale-and-refused.test.ts's to show).
  await page.waitForTimeout(1_500);
  assert.match(plainText(await error.innerText()), /^Roll back of .+ was not done: the server refused the token/);
  assert.deepEqual(pageErrors, []);
});

/**
 * A device's token is valid, but the dashboard's reads need viewer or higher: every read is a 403.
 * It was taken for a server that does not answer: "Cannot refresh: … The views show the state of
 * <time>" (no view had been shown), polled every 5 s for ever; typed over a saved token, "Enter it
 * again once the server answers".
 */
test('a token whose role may not view the dashboard (a device\'s) signs out saying so, and nothing is polled; typed over a saved token it is not used', async (t) => {
  const fixture = await pausedRolloutAndPage(t, 'dismiss');
  if (!fixture) return;
  const { server } = fixture;
  const { page, pageErrors } = fixture.browser;
  const device = await json<{ token: string }>(await server.request('POST', '/api/tokens', { json: { role: 'device', label: 'a field unit' } }));
  const calls: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.startsWith('/api/')) calls.push(path);
  });
  const error = page.locator('#error');

  await page.goto(`${server.baseUrl}/dashboard/#token=${device.token}`);
  await error.filter({ hasText: 'may not view the dashboard' }).waitFor({ timeout: 5_000 });
  assert.match(plainText(await error.innerText()), /^(The link's token|This token) may not view the dashboard \(role device may not do this \(needs viewer or higher\)\)\. Enter a viewer, operator or admin token to see the fleet\.$/);
  assert.equal(await page.locator('#live').innerText(), 'signed out');
  calls.length = 0;
  await page.waitForTimeout(POLL_MS + 1_000);
  assert.deepEqual(calls, [], 'not polled');

  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#token').fill(device.token);
  await page.locator('#token').press('Enter');
  await error.filter({ hasText: 'That token may not view the dashboard' }).waitFor({ timeout: 5_000 });
  assert.equal(plainText(await error.innerText()), 'That token may not view the dashboard (role device may not do this (needs viewer or higher)): it was not used; the dashboard goes on with your saved token.');
  assert.equal(await page.evaluate(() => localStorage.getItem('fleetprune.token')), ADMIN_TOKEN, 'the saved token stays');
  assert.ok(await page.locator('#rollout-phase', { hasText: 'Paused' }).isVisible(), 'the views stay');
  assert.deepEqual(pageErrors, []);
});
