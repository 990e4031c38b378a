import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { afterNextRefresh, openDashboardPage } from './dashboard-browser.ts';
import { json, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

/** A reason with no place to break a line (the API takes up to 500 characters), with right-to-left text in it. */
const LONG_REASON = `${'x'.repeat(200)}שלום${'y'.repeat(200)}`;

/** A dashboard page, and a server with two rollouts of iris@2: `older` rolled back (with LONG_REASON), `newer` paused. */
async function twoRolloutsRig(t: TestContext) {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return null;
  const server = await serverWithFleet(t);
  if (!server) return null;
  const older = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, older, (s) => s.phase === 'Paused', 'its pause');
  await json(await server.request('POST', `/api/rollouts/${older}/rollback?reason=${encodeURIComponent(LONG_REASON)}`));
  await waitForRollout(server, older, (s) => s.phase === 'RolledBack', 'its rollback');
  const newer = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, newer, (s) => s.phase === 'Paused', 'its pause');
  return { ...browser, server, older, newer };
}

const heading = (page: Page, id: string) => page.locator('#rollout-detail h3', { hasText: `${id}:` }).waitFor({ timeout: 5_000 });

test('a link to a rollout (#rollout=ID) opens it, each selection is a history entry that back and forward return to, and a link to no rollout, or with an id of the wrong form, falls back to the newest', async (t) => {
  const rig = await twoRolloutsRig(t);
  if (!rig) return;
  const { page, pageErrors, policyViolations, server, older, newer } = rig;

  // A deep link beside the token: the token leaves the address, the rollout stays and is shown.
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}&rollout=${older}`);
  await heading(page, older);
  assert.equal(new URL(page.url()).hash, `#rollout=${older}`);
  await page.locator(`#rollouts tr[data-rollout="${newer}"]`).click();
  await heading(page, newer);
  assert.equal(new URL(page.url()).hash, `#rollout=${newer}`, 'the selection is in the address');
  await page.goBack();
  await heading(page, older);
  await page.goForward();
  await heading(page, newer);

  // A link to a rollout the server does not have: said so, and the newest is shown (the views are not stale).
  await page.goto(`${server.baseUrl}/dashboard/#rollout=no-such-rollout`);
  await page.locator('#error', { hasText: 'There is no rollout no-such-rollout; showing the newest one.' }).waitFor({ timeout: 5_000 });
  await heading(page, newer);
  assert.ok(await page.locator('#stale').isHidden(), 'not marked stale');
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });

  // A link whose id cannot be a rollout's (the full stop of the sentence it ended, an id too long)
  // is not asked for: said to be wrong, and the newest is shown, with its list and its actions.
  const asked: string[] = [];
  page.on('request', (request) => asked.push(decodeURIComponent(new URL(request.url()).pathname)));
  const tooLong = `ro-${'a'.repeat(62)}`;
  for (const [link, shown] of [[`${older}.`, `${older}.`], [tooLong, tooLong]] as const) {
    await page.goto('about:blank');
    await page.goto(`${server.baseUrl}/dashboard/#rollout=${link}`);
    await page.locator('#error', { hasText: `The link is wrong: ${shown} is not a rollout id` }).waitFor({ timeout: 5_000 });
    assert.match(await page.locator('#error').innerText(), /; showing the newest one\.$/);
    await heading(page, newer);
    assert.equal(await page.locator('#rollouts tr[data-rollout]').count(), 2, 'the rollout list is drawn');
    assert.ok(await page.locator('#rollout-detail button[data-action="rollback"]').isEnabled(), 'Roll back is on');
    assert.ok(await page.locator('#stale').isHidden(), 'not marked stale');
    await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 5_000 });
    assert.equal(new URL(page.url()).hash, '', 'the wrong link leaves the address');
    assert.deepEqual(asked.filter((path) => path.startsWith(`/api/rollouts/${link}`)), [], `nothing is asked about ${link}`);
  }
  // An id the server refuses as malformed (400) all the same: the same fall-back, not a stale page.
  await page.route((url) => url.pathname === `/api/rollouts/${older}`, (route) =>
    route.fulfill({ status: 400, contentType: 'application/json', body: JSON.stringify({ error: { code: 'bad_request', message: 'path.id: must be a rollout id' } }) }),
  );
  await page.goto('about:blank');
  await page.goto(`${server.baseUrl}/dashboard/#rollout=${older}`);
  await page.locator('#error', { hasText: `The link is wrong: ${older} is not a rollout id` }).waitFor({ timeout: 5_000 });
  await heading(page, newer);
  assert.ok(await page.locator('#stale').isHidden(), 'not marked stale');
  await page.unrouteAll({ behavior: 'wait' });
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});

test('a keyboard alone selects a rollout, and the focus stays on its button across the refreshes that re-render the views', async (t) => {
  const rig = await twoRolloutsRig(t);
  if (!rig) return;
  const { page, pageErrors, server, older, newer } = rig;
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await heading(page, newer);

  // Every rollout in the list is reachable with Tab and chosen with Enter.
  const focusedRollout = () => page.evaluate(() => (document.activeElement as HTMLElement | null)?.closest<HTMLElement>('[data-rollout]')?.dataset.rollout ?? document.activeElement?.tagName);
  await page.locator('#token-form button[type="submit"]').focus();
  let tabs = 0;
  while ((await focusedRollout()) !== older) {
    assert.ok(++tabs < 20, `Tab never reaches rollout ${older} (focus on ${await focusedRollout()})`);
    await page.keyboard.press('Tab');
  }
  await page.keyboard.press('Enter');
  await heading(page, older);
  assert.equal(await focusedRollout(), older, 'the focus stays on the chosen rollout');

  // An action button keeps the focus while the page refreshes under it.
  await heading(page, older);
  await page.locator(`#rollouts tr[data-rollout="${newer}"] button`).press('Enter');
  await heading(page, newer);
  await page.locator('#rollout-detail button[data-action="abort"]').focus();
  await afterNextRefresh(page);
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.action), 'abort', 'the focus is still on Abort');
  assert.deepEqual(pageErrors, []);
});

test('on a phone-sized screen, long unbroken reasons and labels do not widen the page beyond the screen', async (t) => {
  const rig = await twoRolloutsRig(t);
  if (!rig) return;
  const { page, pageErrors, server, older } = rig;
  const enrolled = await server.request('POST', '/api/devices', { json: { id: `dev-${'z'.repeat(60)}`, labels: { site: 's1', note: 'n'.repeat(250) } } });
  assert.equal(enrolled.status, 201, await enrolled.text());
  await page.setViewportSize({ width: 375, height: 800 });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator(`#rollouts tr[data-rollout="${older}"] td`, { hasText: LONG_REASON }).click();
  await page.locator('#rollout-detail p', { hasText: LONG_REASON }).waitFor({ timeout: 5_000 });
  await page.locator('#fleet tr[data-device^="dev-zzz"]').waitFor({ timeout: 5_000 });
  const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, screen: window.innerWidth }));
  const wider = await page.evaluate(() =>
    Array.from(document.querySelectorAll('body *'))
      .filter((e) => !e.closest('.table-wrap') && e.getBoundingClientRect().right > window.innerWidth)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className ? `.${e.className}` : ''}`),
  );
  assert.ok(widths.page <= widths.screen, `the page is ${widths.page} px wide on a ${widths.screen} px screen (wider: ${wider.slice(0, 10).join(', ')})`);
  assert.deepEqual(pageErrors, []);
});

test('after a refused token, a valid one on a server without rollouts no longer shows "signed out"', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await startTestServer(t);
  if (!server) return;
  await page.goto(`${server.baseUrl}/dashboard/#token=wrong-token`);
  await page.locator('#live', { hasText: 'signed out' }).waitFor({ timeout: 5_000 });
  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('#rollouts', { hasText: 'No rollouts yet.' }).waitFor({ timeout: 5_000 });
  await page.locator('#error').waitFor({ state: 'hidden', timeout: 5_000 });
  assert.notEqual(await page.locator('#live').innerText(), 'signed out');
  assert.deepEqual(pageErrors, []);
});

test('a token holding a character no header can carry (a pasted curly quote) is refused as such, not shown as an unreachable server, and not kept', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await startTestServer(t);
  if (!server) return;
  const calls: string[] = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/api/')) calls.push(new URL(request.url()).pathname);
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${encodeURIComponent(`\u201c${ADMIN_TOKEN}\u201d`)}`);
  await page.locator('#error', { hasText: 'That token holds characters no token has' }).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator('#live').innerText(), 'signed out');
  assert.equal(await page.locator('#stale').isVisible(), false, 'not "stale": nothing was ever shown');
  assert.equal(await page.evaluate(() => localStorage.getItem('fleetprune.token')), null, 'the token is not kept');
  await page.waitForTimeout(6_000);
  assert.deepEqual(calls, [], 'nothing is asked with it (no polling)');
  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('#rollouts', { hasText: 'No rollouts yet.' }).waitFor({ timeout: 5_000 });
  assert.deepEqual(pageErrors, []);
});
