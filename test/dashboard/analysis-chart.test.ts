import assert from 'node:assert/strict';
import { test } from 'node:test';
import { misbehavingServer } from '../helpers/misbehaving-http.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

test('an analysis chart with a single measurement (a failed pilot) spans minutes around it, not years', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors, policyViolations } = browser;
  // A Prometheus whose every answer is one sample of 0.5.
  const prometheus = await misbehavingServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [Date.now() / 1000, '0.5'] }] } }));
  });
  t.after(() => prometheus.close());
  const server = await serverWithFleet(t, { prometheusUrl: prometheus.url });
  if (!server) return;
  const metric = { name: 'accuracy', count: 1, successCondition: 'result[0] >= 0.9', provider: { prometheus: { query: 'up' } } };
  const id = await startRollout(server, [{ analysis: { metrics: [metric] } }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Failed', 'failure at its one measurement');

  // uPlot draws its axes on a canvas: record the text it draws.
  await page.addInitScript(() => {
    const drawn: string[] = ((window as unknown as { __drawn: string[] }).__drawn = []);
    const fillText = CanvasRenderingContext2D.prototype.fillText;
    CanvasRenderingContext2D.prototype.fillText = function (text: string, x: number, y: number, maxWidth?: number) {
      drawn.push(String(text));
      return maxWidth === undefined ? fillText.call(this, text, x, y) : fillText.call(this, text, x, y, maxWidth);
    };
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-phase', { hasText: 'Failed' }).waitFor({ timeout: 5_000 });
  await page.locator('.chart[data-metric="accuracy"] canvas').waitFor({ timeout: 5_000 });
  await page.waitForFunction(() => (window as unknown as { __drawn: string[] }).__drawn.length > 0, undefined, { timeout: 5_000 });
  const drawn = await page.evaluate(() => (window as unknown as { __drawn: string[] }).__drawn);
  const years = drawn.filter((text) => /^\d{4}$/.test(text));
  assert.deepEqual(years, [], `the time axis is labelled with times of day, not years: ${JSON.stringify(drawn)}`);
  const times = drawn.filter((text) => /^\d{1,2}:\d{2}(am|pm)?$/i.test(text));
  assert.ok(times.length >= 2, `the time axis has ticks minutes apart: ${JSON.stringify(drawn)}`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});
