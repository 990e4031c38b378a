import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';

/**
 * On a narrow screen a wide table scrolled sideways in its own box, whose scrollbar was at the
 * bottom of the table: with 307 devices at 360 px, 10,000 px down, where a mouse user never sees
 * it. A long table scrolls in a box no taller than the window, its scrollbar in reach, and paging
 * shows the top of the new page.
 */
test('a long wide table scrolls inside a box no taller than the window, so its sideways scrollbar is in reach', { timeout: 60_000 }, async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const server = await startTestServer(t);
  if (!server) return;
  const { repos } = new FleetStore(server.server.ctx.store);
  const enrolledAt = new Date().toISOString();
  for (let n = 1; n <= 520; n++) {
    await repos.devices.insert({ id: `dev-${String(n).padStart(4, '0')}`, labels: { site: `s${n % 4}`, hardware: 'pi4' }, secretHash: 'h', tokenId: 't', enrolledAt, enrolledBy: 'test' });
  }
  const { page, pageErrors } = browser;
  await page.setViewportSize({ width: 360, height: 800 });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  const fleet = page.locator('#fleet');
  await fleet.getByText('(devices 1–500 by id)').waitFor({ timeout: 10_000 });

  const box = () =>
    page.evaluate(() => {
      const wrap = document.querySelector<HTMLElement>('#fleet .table-wrap')!;
      // Its top at the top of the window, as a user scrolls to the table.
      wrap.scrollIntoView({ block: 'start' });
      const { top, bottom } = wrap.getBoundingClientRect();
      return { top: Math.round(top), bottom: Math.round(bottom), window: window.innerHeight, wide: wrap.scrollWidth > wrap.clientWidth, scrollTop: wrap.scrollTop, scrollsDown: wrap.scrollHeight > wrap.clientHeight };
    });
  const shown = await box();
  assert.ok(shown.wide, `the table is wider than the screen (the case in point): ${JSON.stringify(shown)}`);
  assert.ok(shown.bottom <= shown.window, `the box's bottom edge, where its sideways scrollbar is, is in the window: ${JSON.stringify(shown)}`);
  assert.ok(shown.scrollsDown, `the rows scroll inside the box: ${JSON.stringify(shown)}`);
  // A mouse wheel over the box scrolls its rows; the next page then starts at its top.
  await page.locator('#fleet .table-wrap').hover();
  await page.mouse.wheel(0, 600);
  await page.waitForFunction(() => document.querySelector('#fleet .table-wrap')!.scrollTop > 0);
  await fleet.locator('button[data-page="next"]').click();
  await fleet.getByText('(devices 501–520 by id)').waitFor({ timeout: 10_000 });
  await page.waitForFunction(() => document.querySelector('#fleet .table-wrap')!.scrollTop === 0, undefined, { timeout: 5_000 });
  assert.deepEqual(pageErrors, []);
});
