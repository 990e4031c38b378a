import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import { engineMissing } from '../helpers/engines.ts';
import { fleetpruneMetricsIn, isExportedMetric } from '../helpers/metric-catalogue.ts';
import { PrometheusProcess, prometheusBinary } from '../helpers/prometheus.ts';
import { startTestServer } from '../server/helpers/test-server.ts';
import { dashboardQueries, loadDashboard, writePrometheusConfig } from './dashboard-queries.ts';

/**
 * grafana/dashboards/fleetprune.json against real engines: a fleetprune server (in process, on
 * ephemeral ports) and a real Prometheus started with deploy/prometheus/prometheus.yml and its
 * rules (intervals shortened to 1s, targets pointed at the test server). Every panel, variable
 * and annotation query must be accepted by Prometheus (no parse or execution error), and every
 * recording/alerting rule must evaluate healthily. That every query also returns data after a
 * demo rollout is test/grafana/dashboard-data.test.ts.
 */

/**
 * Metrics the dashboard shows that no component exports yet, and what would export them.
 * The test fails when one of them starts being exported, so this list shrinks.
 */
const PENDING_METRICS: Readonly<Record<string, string>> = {};

test('dashboard structure: fixed uid, schema 39, model/version/cohort variables, only known metric names', () => {
  const dashboard = loadDashboard();
  assert.equal(dashboard.uid, 'fleetprune-overview');
  assert.equal(dashboard.schemaVersion, 39);
  assert.deepEqual(dashboard.templating.list.map((v) => v.name), ['datasource', 'model', 'version', 'cohort']);
  const titles = dashboard.panels.map((panel) => panel.title);
  assert.equal(new Set(titles).size, titles.length, 'panel titles are unique');
  const queries = dashboardQueries(dashboard);
  assert.ok(queries.length >= 25, `${queries.length} queries`);
  const unknown = new Set<string>();
  for (const { expr } of queries) for (const name of fleetpruneMetricsIn(expr)) if (!isExportedMetric(name) && !(name in PENDING_METRICS)) unknown.add(name);
  assert.deepEqual([...unknown], [], 'metric names neither in shared/metrics/* nor pending');
  for (const name of Object.keys(PENDING_METRICS)) assert.equal(isExportedMetric(name), false, `${name} is exported now: remove it from PENDING_METRICS`);
  // The analysis panel plots values and thresholds together.
  const analysis = dashboard.panels.find((panel) => panel.title === 'Analysis values against thresholds')!;
  assert.deepEqual(analysis.targets!.map((target) => fleetpruneMetricsIn(target.expr!)[0]), ['fleetprune_analysis_value', 'fleetprune_analysis_threshold']);
});

test('a query that matches two sides grouped by fleet matches on fleet too: one Prometheus may scrape several fleets, and a match without it finds duplicate series', () => {
  const unmatched = dashboardQueries(loadDashboard())
    .map(({ expr }) => expr)
    .filter((expr) => /by \(fleet\b/.test(expr))
    .flatMap((expr) => [...expr.matchAll(/\bon \(([^)]*)\)/g)].filter((match) => !match[1]!.split(/,\s*/).includes('fleet')).map(() => expr));
  assert.deepEqual(unmatched, []);
});

test('dashboard layout: unique panel ids, every panel inside the 24-column grid, no two overlapping, listed in reading order', () => {
  const panels = loadDashboard().panels;
  const ids = panels.map((panel) => panel.id);
  assert.ok(ids.every((id) => Number.isInteger(id)), 'every panel has an id');
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const { title, type, gridPos: { x, y, w, h } } of panels) {
    assert.ok(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24, `${title}: ${JSON.stringify({ x, y, w, h })} is outside the grid`);
    if (type === 'row') assert.deepEqual({ x, w, h }, { x: 0, w: 24, h: 1 }, `row ${title} spans the width`);
  }
  const overlaps: string[] = [];
  for (const [i, a] of panels.entries()) {
    for (const b of panels.slice(i + 1)) {
      const [p, q] = [a.gridPos, b.gridPos];
      if (p.x < q.x + q.w && q.x < p.x + p.w && p.y < q.y + q.h && q.y < p.y + p.h) overlaps.push(`${a.title} / ${b.title}`);
    }
  }
  assert.deepEqual(overlaps, [], 'overlapping panels');
  const order = panels.map((panel) => panel.title);
  const reading = [...panels].sort((a, b) => a.gridPos.y - b.gridPos.y || a.gridPos.x - b.gridPos.x).map((panel) => panel.title);
  assert.deepEqual(order, reading, 'panels are listed top to bottom, left to right');
});

test('model quality panels: MSE (regression models) mirrors accuracy (classifiers) — candidate, baseline, and candidate vs baseline by cohort', () => {
  const dashboard = loadDashboard();
  const panel = (title: string) => {
    const found = dashboard.panels.find((candidate) => candidate.title === title);
    assert.ok(found, `panel "${title}"`);
    return found;
  };
  const mirrors = [
    { accuracy: 'Accuracy — candidate', mse: 'MSE — candidate', combine: (expr: string) => expr },
    { accuracy: 'Accuracy — baseline (active)', mse: 'MSE — baseline (active)', combine: (expr: string) => expr },
    // A difference of accuracies; a ratio of MSEs (on the scale of the MSE, whatever the label's units).
    { accuracy: 'Candidate − baseline accuracy, by cohort', mse: 'Candidate ÷ baseline MSE, by cohort', combine: (expr: string) => expr.replace(') - on (fleet, model, cohort) ', ') / on (fleet, model, cohort) ') },
  ];
  const row = (title: string) => dashboard.panels.filter((candidate) => candidate.type === 'row' && candidate.gridPos.y < panel(title).gridPos.y).at(-1)?.title;
  for (const { accuracy, mse, combine } of mirrors) {
    const [a, m] = [panel(accuracy), panel(mse)];
    assert.equal(m.type, a.type, mse);
    assert.deepEqual(
      m.targets!.map((target) => fleetpruneMetricsIn(target.expr!)),
      [[DEVICE_REPORT_METRICS.mse]],
      `${mse} reads ${DEVICE_REPORT_METRICS.mse}`,
    );
    // Same variables, labels, legend and query type as the accuracy panel: only the series (and - → ÷) differ.
    const expected = a.targets!.map((target) => ({ ...target, expr: combine(target.expr!.replaceAll(DEVICE_REPORT_METRICS.accuracy, DEVICE_REPORT_METRICS.mse)) }));
    assert.deepEqual(m.targets, expected, mse);
    // Beside its accuracy panel, at its size, in the same row.
    assert.equal(row(mse), row(accuracy));
    assert.deepEqual([m.gridPos.w, m.gridPos.h], [a.gridPos.w, a.gridPos.h], `${mse} is as large as ${accuracy}`);
    const beside = (m.gridPos.y === a.gridPos.y && m.gridPos.x === a.gridPos.x + a.gridPos.w) || (m.gridPos.x === a.gridPos.x && m.gridPos.y === a.gridPos.y + a.gridPos.h);
    assert.ok(beside, `${mse} ${JSON.stringify(m.gridPos)} is right of or below ${accuracy} ${JSON.stringify(a.gridPos)}`);
    assert.match(m.description ?? '', /lower is better/i, `${mse}: its description says lower is better`);
  }
});

test('every dashboard query runs on a real Prometheus scraping a real fleetprune server', async (t) => {
  const binary = prometheusBinary();
  if (!binary) return engineMissing(t, 'Prometheus', 'no prometheus binary at /usr/bin/prometheus or on PATH (set PROMETHEUS_BIN)');
  const server = (await startTestServer(t))!;
  const serverTarget = new URL(server.baseUrl).host;

  const prometheus = await PrometheusProcess.start(binary, (dir) => writePrometheusConfig(dir, { server: serverTarget }));
  t.after(() => prometheus.stop());

  await prometheus.waitFor('the server target up', async () => {
    const answer = await prometheus.query('up{job="fleetprune"}');
    const value = (answer.data?.result as { value: [number, string] }[] | undefined)?.[0]?.value[1];
    return value === '1' || `up=${value}`;
  });

  await t.test('recording and alerting rules load and evaluate without errors', async () => {
    await prometheus.waitFor('every rule evaluated', async () => {
      const answer = await prometheus.api('rules');
      const rules = (answer.data as unknown as { groups: { rules: { name: string; health: string; lastError?: string; lastEvaluation: string }[] }[] }).groups.flatMap((group) => group.rules);
      const bad = rules.filter((rule) => rule.health === 'err');
      assert.deepEqual(bad.map((rule) => `${rule.name}: ${rule.lastError}`), []);
      const pending = rules.filter((rule) => rule.lastEvaluation.startsWith('0001'));
      return (rules.length >= 20 && pending.length === 0) || `${rules.length} rules, ${pending.length} not evaluated yet`;
    }, 15_000);
  });

  for (const query of dashboardQueries()) {
    await t.test(`${query.panel} [${query.refId}]`, async () => {
      const answer = query.instant
        ? await prometheus.query(query.expr)
        : await prometheus.api('query_range', { query: query.expr, start: String(Date.now() / 1000 - 300), end: String(Date.now() / 1000), step: '15' });
      assert.equal(answer.status, 'success', `${answer.errorType}: ${answer.error}\n${query.expr}`);
      if (query.expectData) assert.ok((answer.data!.result as unknown[]).length > 0, `no data for: ${query.expr}`);
    });
  }
});
