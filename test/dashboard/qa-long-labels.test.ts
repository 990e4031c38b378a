import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { serverWithFleet } from './dashboard-fixtures.ts';

/**
 * One device with a long label value without a break (labels take up to 256 characters) or a long
 * id widened the fleet table to thousands of pixels: on a desktop screen the status, active and
 * candidate of every device were off to the right of its box, to be scrolled to.
 */
test('a long unbroken label value or device id wraps in its cell: every device’s status and versions stay in view', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const server = await serverWithFleet(t);
  if (!server) return;
  const { page, pageErrors } = browser;
  const enrolled = await server.request('POST', '/api/devices', { json: { id: `dev-${'z'.repeat(60)}`, labels: { site: 's1', note: 'n'.repeat(250) } } });
  assert.equal(enrolled.status, 201, await enrolled.text());
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#fleet tr[data-device^="dev-zzz"]').waitFor({ timeout: 5_000 });

  const layout = () =>
    page.evaluate(() => {
      const wrap = document.querySelector<HTMLElement>('#fleet .table-wrap')!;
      const box = wrap.getBoundingClientRect();
      const cells = Array.from(document.querySelectorAll('#fleet tr[data-device] td:nth-child(n+3)'));
      return {
        table: wrap.scrollWidth,
        box: wrap.clientWidth,
        outOfView: cells.filter((cell) => cell.getBoundingClientRect().right > box.right + 1).length,
        labelsWidth: document.querySelector('#fleet tr[data-device="dev-01"] td.labels')!.getBoundingClientRect().width,
        statusLines: Math.round(document.querySelector('#fleet tr[data-device="dev-01"] td:nth-child(3) .badge')!.getBoundingClientRect().height / 10),
      };
    });
  const desktop = await layout();
  assert.ok(desktop.table <= desktop.box, `the fleet table fits its box on a desktop screen: ${JSON.stringify(desktop)}`);
  assert.equal(desktop.outOfView, 0, `every status, active and candidate cell is in view: ${JSON.stringify(desktop)}`);

  // On a phone the table scrolls sideways as before, with its columns readable: labels not a few letters wide, a status badge on one line.
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(200);
  const phone = await layout();
  assert.ok(phone.labelsWidth >= 150, `the labels column keeps a readable width: ${JSON.stringify(phone)}`);
  assert.equal(phone.statusLines, desktop.statusLines, `the status badge is not broken over lines: ${JSON.stringify({ desktop, phone })}`);
  assert.deepEqual(pageErrors, []);
});
