import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { misbehavingServer } from '../helpers/misbehaving-http.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { afterNextRefresh, openDashboardPage } from './dashboard-browser.ts';
import { serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

/**
 * A rollout failed at its one measurement, against a Prometheus answering one sample per value in
 * `values` (device d0, d1, ...), and the dashboard page open on it, recording the text uPlot draws
 * on its canvases (window.__drawn). Undefined where Chromium is absent.
 */
async function failedRolloutPage(t: TestContext, values: readonly string[]) {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return undefined;
  const prometheus = await misbehavingServer((_req, res) => {
    const now = Date.now() / 1000;
    const result = values.map((value, i) => ({ metric: values.length === 1 ? {} : { device: `d${i}` }, value: [now, value] }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result } }));
  });
  t.after(() => prometheus.close());
  const server = await serverWithFleet(t, { prometheusUrl: prometheus.url });
  if (!server) return undefined;
  const metric = { name: 'accuracy', count: 1, successCondition: 'result[0] >= 0.9', provider: { prometheus: { query: 'up' } } };
  const id = await startRollout(server, [{ analysis: { metrics: [metric] } }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Failed', 'failure at its one measurement');

  const { page } = browser;
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
  return { ...browser, id };
}

test('an analysis chart with a single measurement (a failed pilot) spans minutes around it, not years', async (t) => {
  // A Prometheus whose every answer is one sample of 0.5.
  const opened = await failedRolloutPage(t, ['0.5']);
  if (!opened) return;
  const { page, pageErrors, policyViolations } = opened;
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

test('a failed analysis: its chart shows the median of the per-device values in 24-hour time, the step strip marks the step it stopped at, and times carry their UTC moment', async (t) => {
  // Three series, 0.2, 0.1 and 0.9: their median (and result[0]) is 0.2, their mean 0.4.
  const opened = await failedRolloutPage(t, ['0.2', '0.1', '0.9']);
  if (!opened) return;
  const { page, pageErrors, policyViolations, id } = opened;

  // The step strip says where the rollout stopped: the analysis (step 1), not just "not done".
  const stopped = page.locator('#rollout-detail .step.stopped');
  assert.equal(await stopped.count(), 1, 'one step is marked as the one the rollout stopped at');
  assert.match(await stopped.innerText(), /^1\. /);

  // Local and relative times carry the moment in UTC (the fleet and its operators span time zones).
  const exact = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/;
  assert.match((await page.locator('#decision-log .table-wrap tbody tr td').first().getAttribute('title')) ?? '', exact, 'a decision time has its UTC moment');
  assert.match((await page.locator(`#rollouts tr[data-rollout="${id}"] td`).last().getAttribute('title')) ?? '', exact, "a rollout's last update has its UTC moment");

  // The one measurement sits in the middle of its chart (ten minutes around it): point at it and read the legend.
  // The views are redrawn at every refresh (a new chart, read out only once the pointer moves): point until one answers.
  const over = page.locator('.chart[data-metric="accuracy"] .u-over');
  await over.waitFor({ timeout: 5_000 });
  let candidate: string | null | undefined;
  for (let attempt = 0; attempt < 20 && (candidate === undefined || candidate === null || candidate === '--'); attempt++) {
    const box = await over.boundingBox();
    if (!box) continue;
    await page.mouse.move(box.x + box.width / 2 + (attempt % 2), box.y + box.height / 2);
    candidate = await page.evaluate(() => {
      const row = Array.from(document.querySelectorAll('.chart[data-metric="accuracy"] .u-legend .u-series')).find((r) => r.textContent?.includes('result'));
      return row?.querySelector('.u-value')?.textContent;
    });
  }
  assert.equal(candidate, '0.2', 'the result is shown as the median of its values (what the checks compare), not their mean (0.4)');
  // The legend names the lines the chart draws: a query metric with a success condition alone has no baseline and no failure threshold,
  // and what it draws is the query's result, no candidate's value.
  const legend = await page.evaluate(() =>
    Array.from(document.querySelectorAll('.chart[data-metric="accuracy"] .u-legend .u-series .u-label')).map((label) => label.textContent),
  );
  assert.deepEqual(legend.slice(1), ['result (median of its values)', 'success threshold']);

  // A refresh that finds the rollout unchanged leaves its chart as it is: the read-out under the
  // pointer stays, and is not put back to "--" every few seconds.
  await page.evaluate(() => ((document.querySelector('.chart[data-metric="accuracy"]') as (HTMLElement & { marked?: boolean }) | null)!.marked = true));
  await afterNextRefresh(page);
  const readOutAfterRefresh = await page.evaluate(() => {
    const now = document.querySelector('.chart[data-metric="accuracy"]') as (HTMLElement & { marked?: boolean }) | null;
    const row = Array.from(now?.querySelectorAll('.u-legend .u-series') ?? []).find((r) => r.textContent?.includes('result'));
    return { same: now?.marked === true, value: row?.querySelector('.u-value')?.textContent };
  });
  assert.deepEqual(readOutAfterRefresh, { same: true, value: '0.2' }, 'the chart and its read-out outlive a refresh that changed nothing');

  const drawn = await page.evaluate(() => (window as unknown as { __drawn: string[] }).__drawn);
  const times = drawn.filter((text) => /^\d{1,2}:\d{2}/.test(text));
  assert.ok(times.length >= 2, `the time axis has times of day: ${JSON.stringify(drawn)}`);
  assert.deepEqual(drawn.filter((text) => /am|pm/i.test(text)), [], `the time axis is in 24-hour time, as the decision log: ${JSON.stringify(drawn)}`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});
