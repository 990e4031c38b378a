import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

test('after Resume (redrawn as Pause) the keyboard focus is on Pause, not the top of the page; a rollout selected below the fold is scrolled into view', async (t) => {
  const browser = await openDashboardPage(t, 'accept');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;
  const id = await startRollout(server, [{ pause: {} }, { setWeight: 50 }, { pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused' && s.stepIndex === 0, 'a pause at step 1');

  await page.setViewportSize({ width: 1000, height: 700 });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  const resume = page.locator('#rollout-detail button[data-action="resume"]');
  await resume.waitFor({ timeout: 5_000 });
  await resume.focus();
  await page.keyboard.press('Enter');
  // Running again (its devices are offline: it stays at step 2, assigning), so the button is Pause now.
  await waitForRollout(server, id, (s) => s.phase === 'Progressing' && s.stepIndex === 1, 'running step 2');
  await page.locator('#rollout-detail button[data-action="pause"]').waitFor({ timeout: 5_000 });
  for (const deadline = Date.now() + 5_000; ; await page.waitForTimeout(50)) {
    const focused = await page.evaluate(() => ({ tag: document.activeElement?.tagName, action: (document.activeElement as HTMLElement | null)?.dataset.action ?? null }));
    if (focused.action === 'pause') break;
    assert.ok(Date.now() < deadline, `the focus went to ${JSON.stringify(focused)}`);
  }

  // A short window: the detail is below the list. Selecting the rollout brings it into view.
  await page.setViewportSize({ width: 1000, height: 260 });
  await page.evaluate(() => window.scrollTo(0, 0));
  const detailTop = () => page.evaluate(() => document.getElementById('rollout-detail')!.getBoundingClientRect().top);
  assert.ok((await detailTop()) > 260 * 0.75, `the detail starts off screen (${await detailTop()} px)`);
  await page.locator(`[data-rollout="${id}"] button`).first().click();
  for (const deadline = Date.now() + 5_000; (await detailTop()) > 260 * 0.75; await page.waitForTimeout(50)) assert.ok(Date.now() < deadline, `the detail stayed at ${await detailTop()} px`);
  assert.deepEqual(pageErrors, []);
});
