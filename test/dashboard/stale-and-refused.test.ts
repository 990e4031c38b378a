import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { cuttableProxy, json, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

/** The dashboard polls every 5 s; a failed refresh shows within one poll. */
const POLL = 7_000;

/** Counts every time the error box is hidden, from now on. */
async function countHides(page: Page): Promise<() => Promise<number>> {
  await page.evaluate(() => {
    const box = document.getElementById('error')!;
    const w = window as unknown as { __hides: number };
    w.__hides = 0;
    new MutationObserver(() => {
      if (box.hidden) w.__hides++;
    }).observe(box, { attributes: true, attributeFilter: ['hidden'] });
  });
  return () => page.evaluate(() => (window as unknown as { __hides: number }).__hides);
}

/** A dashboard page, and a server whose rollout (a pause, then 100%) is paused; null when Chromium or a store engine is missing. */
async function pausedRolloutRig(t: TestContext) {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return null;
  const server = await serverWithFleet(t);
  if (!server) return null;
  const id = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'its pause');
  // The page's own object, not a copy: setting answerDialogs on it answers the next dialog so.
  return Object.assign(browser, { server, id });
}

const actionsOff = (page: Page) => page.evaluate(() => Array.from(document.querySelectorAll('#rollout-detail button[data-action]')).map((b) => `${b.textContent}: ${b.matches(':disabled') ? 'off' : 'on'}`));

test('while the server is unreachable the dashboard says its views are stale, keeps saying so, and turns the actions off until a refresh succeeds', async (t) => {
  const rig = await pausedRolloutRig(t);
  if (!rig) return;
  const { page, pageErrors, policyViolations, server } = rig;
  const proxy = await cuttableProxy(t, server.baseUrl);

  await page.goto(`${proxy.url}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });
  const before = await actionsOff(page);
  assert.ok(before.some((b) => b.endsWith(': on')), `some actions are on: ${before}`);

  proxy.cut();
  const error = page.locator('#error');
  await error.waitFor({ state: 'visible', timeout: POLL });
  const hides = await countHides(page);
  // Marked, to see whether a later failed refresh replaces the alert's content (read out again).
  await page.evaluate(() => ((document.getElementById('error')!.firstChild as unknown as { said?: number }).said = 1));
  // Longer than the old 6 s hide timer, over at least one more failed refresh.
  await page.waitForTimeout(6_500);
  assert.equal(await hides(), 0, 'the error box stays up while refreshes keep failing');
  assert.equal(await page.evaluate(() => (document.getElementById('error')!.firstChild as unknown as { said?: number }).said), 1, 'the alert said once, not again at every failed refresh');
  assert.ok(await error.isVisible());
  // Said in words, not only the browser's "Failed to fetch".
  assert.match(await error.innerText(), /^Cannot refresh: the server cannot be reached: it is down, or the network to it is \(Failed to fetch\)\. The views show the state of \d\d:\d\d:\d\d; actions are off until a refresh succeeds\.$/);
  const stale = page.locator('#stale');
  assert.ok(await stale.isVisible(), 'a stale badge is shown');
  assert.match(await stale.innerText(), /^stale since \d\d:\d\d:\d\d$/);
  assert.equal(await page.locator('main.stale').count(), 1, 'the views are marked stale');
  // Marked without fading: faded, their text fell below 4.5:1 (WCAG AA).
  assert.deepEqual(await page.evaluate(() => [getComputedStyle(document.querySelector('main')!).opacity, getComputedStyle(document.querySelector('main section')!).borderTopStyle]), ['1', 'dashed']);
  const during = await actionsOff(page);
  assert.ok(during.length > 0 && during.every((b) => b.endsWith(': off')), `every action is off: ${during}`);
  assert.equal(await page.locator('#rollout-phase').innerText(), 'Paused', 'the last known state stays visible');

  proxy.restore();
  await stale.waitFor({ state: 'hidden', timeout: POLL });
  await error.waitFor({ state: 'hidden', timeout: 1_000 });
  assert.equal(await page.locator('main.stale').count(), 0);
  assert.deepEqual(await actionsOff(page), before, 'the actions are back as they were');
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});

test('when its token is revoked the dashboard clears its views, stops polling and following the event stream, asks for a token, and resumes with a valid one', async (t) => {
  const rig = await pausedRolloutRig(t);
  if (!rig) return;
  const { page, pageErrors, policyViolations, server, id } = rig;
  const operator = await json<{ token: string; record: { id: string } }>(await server.request('POST', '/api/tokens', { json: { role: 'operator' } }));

  const calls: string[] = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/api/')) calls.push(new URL(request.url()).pathname);
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${operator.token}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#fleet tr[data-device="dev-01"]').waitFor({ timeout: 5_000 });
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });

  const revoked = await server.request('DELETE', `/api/tokens/${operator.record.id}`);
  assert.equal(revoked.status, 204, await revoked.text());
  const error = page.locator('#error');
  await error.filter({ hasText: 'The server refused the token (revoked or mistyped). Enter a valid token to see the fleet.' }).waitFor({ timeout: POLL });
  for (const view of ['#rollouts', '#rollout-detail', '#fleet', '#models', '#sweep-chart']) {
    assert.equal(await page.locator(view).innerHTML(), '', `${view} is cleared`);
  }
  assert.equal(await page.locator('#live').innerText(), 'signed out');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token', 'the token field has the focus');
  assert.equal(await page.evaluate(() => localStorage.getItem('fleetprune.token')), null, 'the refused token is forgotten');

  // Nothing more is asked with the refused token: no polling, no event-stream retries.
  calls.length = 0;
  await page.waitForTimeout(6_000);
  assert.deepEqual(calls, [], 'no request while the token is refused');
  assert.ok(await error.isVisible(), 'the request for a token stays up');

  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token-form button[type="submit"]').click();
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#fleet tr[data-device="dev-01"]').waitFor({ timeout: 5_000 });
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });
  await error.waitFor({ state: 'hidden', timeout: 1_000 });
  assert.ok(calls.some((path) => path === `/api/rollouts/${id}/events`), 'the event stream is followed again');
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});

test("a viewer's token sees every view but the actions are off, and the page says whose token it is; an operator's turns them on; a typed token or a link's replaces the saved one only once the server accepts it (a link's, also the operator)", async (t) => {
  const rig = await pausedRolloutRig(t);
  if (!rig) return;
  const { page, dialogs, pageErrors, policyViolations, server } = rig;
  const viewer = await json<{ token: string }>(await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'night shift' } }));
  const operator = await json<{ token: string }>(await server.request('POST', '/api/tokens', { json: { role: 'operator', label: 'pilot lead' } }));

  await page.goto(`${server.baseUrl}/dashboard/#token=${viewer.token}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#whoami', { hasText: 'night shift (viewer, read-only)' }).waitFor({ timeout: 5_000 });
  const asViewer = await actionsOff(page);
  assert.ok(asViewer.length > 0 && asViewer.every((b) => b.endsWith(': off')), `every action is off for a viewer: ${asViewer}`);
  assert.match((await page.locator('#rollout-actions').getAttribute('title')) ?? '', /need an operator or admin token; this one is a viewer's/);

  await page.locator('#token').fill(operator.token);
  await page.locator('#token').press('Enter');
  await page.locator('#whoami', { hasText: 'pilot lead (operator)' }).waitFor({ timeout: 5_000 });
  await page.waitForFunction(() => !(document.getElementById('rollout-actions') as HTMLFieldSetElement).disabled, undefined, { timeout: 5_000 });
  assert.ok((await actionsOff(page)).some((b) => b.endsWith(': on')), 'an operator can act');
  const saved = () => page.evaluate(() => localStorage.getItem('fleetprune.token'));
  assert.equal(await saved(), operator.token);

  // A mistyped token costs nothing: the server refuses it, and the working one stays in use and saved.
  await page.locator('#token').fill(`${operator.token}x`);
  await page.locator('#token').press('Enter');
  await page.locator('#error', { hasText: 'The server refused that token (revoked or mistyped): it was not used; the dashboard goes on with your saved token.' }).waitFor({ timeout: 5_000 });
  assert.equal(await saved(), operator.token, 'the saved token is neither replaced nor erased by a refused one');
  assert.equal(await page.locator('#token').inputValue(), operator.token, 'the field shows the token in use');
  await page.waitForTimeout(POLL); // a refresh with the token in use
  assert.notEqual(await page.locator('#live').innerText(), 'signed out');
  assert.equal(await page.locator('#whoami').innerText(), 'pilot lead (operator)');

  // A link carrying someone else's token (the viewer's) while the operator's is saved: the page asks
  // first, naming whose token the link holds; declined, the operator's token stays in use and saved.
  const openLink = async (token: string) => {
    await page.goto('about:blank');
    await page.goto(`${server.baseUrl}/dashboard/#token=${encodeURIComponent(token)}`);
  };
  await openLink(viewer.token);
  await page.locator('#error', { hasText: "Kept your saved token: the link's token (night shift, viewer) was not used." }).waitFor({ timeout: 5_000 });
  assert.deepEqual(dialogs, ['This link signs you in as “night shift” (viewer).\n\nReplace the token saved in this browser, “pilot lead” (operator), with it? Cancel keeps the saved token.']);
  await page.locator('#whoami', { hasText: 'pilot lead (operator)' }).waitFor({ timeout: 5_000 });
  assert.equal(await saved(), operator.token, 'the saved token is kept');
  assert.equal(new URL(page.url()).hash, '', 'the token leaves the address');

  // A refused token in a link is asked nothing but whoami, and neither replaces nor erases the saved token.
  const sentWith = new Map<string, string[]>();
  page.on('request', (request) => {
    const token = request.headers().authorization?.replace(/^Bearer /, '') ?? '';
    sentWith.set(token, [...(sentWith.get(token) ?? []), new URL(request.url()).pathname]);
  });
  await openLink('bogus-token-from-a-chat');
  await page.locator('#error', { hasText: "The server refused the link's token (revoked or mistyped): it was not used; the dashboard goes on with your saved token." }).waitFor({ timeout: 5_000 });
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  await page.locator('#whoami', { hasText: 'pilot lead (operator)' }).waitFor({ timeout: 5_000 });
  assert.notEqual(await page.locator('#live').innerText(), 'signed out');
  assert.equal(await saved(), operator.token, 'the saved token is neither replaced nor erased');
  assert.deepEqual(sentWith.get('bogus-token-from-a-chat'), ['/api/whoami'], 'the link token is only checked');
  assert.equal(dialogs.length, 1, 'no question about a refused token');
  await page.reload();
  await page.locator('#whoami', { hasText: 'pilot lead (operator)' }).waitFor({ timeout: 5_000 });

  // Accepted, the link's token replaces the saved one.
  rig.answerDialogs = 'accept';
  await openLink(viewer.token);
  await page.locator('#whoami', { hasText: 'night shift (viewer, read-only)' }).waitFor({ timeout: 5_000 });
  assert.equal(dialogs.length, 2);
  assert.equal(await saved(), viewer.token, 'replaced once the operator agreed');
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});
