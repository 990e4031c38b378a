import assert from 'node:assert/strict';
import { test } from 'node:test';
import { afterNextRefresh, openDashboardPage } from './dashboard-browser.ts';
import { serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

/**
 * QA at scale: every refresh (a few seconds) replaced the fleet, models and rollout list views
 * whole, so text the operator had selected to copy (a device id, a version, a reason) was lost
 * every few seconds; an abort or rollback done from the keyboard left the focus on its button,
 * which the next refresh drew disabled, so the focus fell to the top of the page; and a reason or
 * a token label without a space (a path, base64) widened the rollout list, the decision log or
 * the whole page by thousands of pixels.
 */
test('a refresh keeps a text selection in the fleet, models and rollout list; the focus after a keyboard abort ends on the rollout, not the page; unbroken reasons and labels do not widen the page', async (t) => {
  const browser = await openDashboardPage(t, 'accept');
  if (!browser) return;
  const server = await serverWithFleet(t);
  if (!server) return;
  const { page, pageErrors } = browser;
  const label = `ops-${'x'.repeat(196)}`;
  const created = await server.request('POST', '/api/tokens', { json: { role: 'operator', label } });
  assert.equal(created.status, 201, await created.clone().text());
  const { token } = (await created.json()) as { token: string };
  const first = await startRollout(server, [{ pause: {} }]);
  await waitForRollout(server, first, (s) => s.phase === 'Paused', 'the first rollout paused');
  const reason = `/var/lib/fleetprune/${'a1b2c3d4'.repeat(55)}`;
  assert.equal((await server.request('POST', `/api/rollouts/${first}/abort?reason=${encodeURIComponent(reason)}`)).status, 200);

  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${server.baseUrl}/dashboard/#token=${token}`);
  await page.locator(`#rollouts tr[data-rollout="${first}"]`).waitFor({ timeout: 5_000 });
  await page.locator('#fleet tr[data-device="dev-01"]').waitFor({ timeout: 5_000 });

  const widths = await page.evaluate(() => {
    const wrap = (selector: string) => document.querySelector<HTMLElement>(selector)!;
    return { page: document.documentElement.scrollWidth, window: window.innerWidth, list: wrap('#rollouts .table-wrap').scrollWidth, listBox: wrap('#rollouts .table-wrap').clientWidth };
  });
  assert.ok(widths.page <= widths.window, `the page fits the window, the token's label wrapped: ${JSON.stringify(widths)}`);
  assert.ok(widths.list <= widths.listBox, `the rollout list fits its box, the reason wrapped: ${JSON.stringify(widths)}`);

  // Selections in three views, then a refresh: each is still selected.
  const select = (selector: string) =>
    page.evaluate((cell) => {
      const node = document.querySelector(cell)!;
      const range = document.createRange();
      range.selectNodeContents(node);
      const selection = window.getSelection()!;
      selection.removeAllRanges();
      selection.addRange(range);
      return selection.toString();
    }, selector);
  const selected = () => page.evaluate(() => window.getSelection()!.toString());
  for (const cell of ['#fleet tr[data-device="dev-01"] td.device-id', '#models tbody tr td', `#rollouts tr[data-rollout="${first}"] td.reason`]) {
    const text = await select(cell);
    assert.ok(text.length > 0, `${cell} has text to select`);
    await afterNextRefresh(page);
    assert.equal(await selected(), text, `${cell}: the selection outlives a refresh`);
  }

  // A rollout started meanwhile comes first in the list: the focus stays on the rollout it was on (rows are matched by rollout, not position).
  await page.locator(`#rollouts tr[data-rollout="${first}"] button`).focus();
  const id = await startRollout(server, [{ pause: {} }]);
  await page.locator(`#rollouts tr[data-rollout="${id}"]`).waitFor({ timeout: 10_000 });
  await afterNextRefresh(page);
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.closest<HTMLElement>('[data-rollout]')?.dataset.rollout), first, 'the focus stayed on its rollout');
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'the second rollout paused');

  // Abort from the keyboard: once the rollout is aborted its buttons are drawn disabled, and the focus is on its title.
  await page.locator(`#rollouts tr[data-rollout="${id}"] button`).click();
  const abort = page.locator('#rollout-detail button[data-action="abort"]');
  await abort.waitFor({ timeout: 5_000 });
  await abort.focus();
  await page.keyboard.press('Enter');
  await waitForRollout(server, id, (s) => s.phase === 'Aborted', 'aborted');
  await page.locator('#rollout-detail button[data-action="abort"]:disabled').waitFor({ timeout: 10_000 });
  await afterNextRefresh(page);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'rollout-title', 'the focus is on the rollout, not the top of the page');
  assert.deepEqual(pageErrors, []);
});
