import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Registry } from 'prom-client';
import type { FleetStore } from '../../server/fleet/fleet-store.ts';
import { restoreExports } from '../../server/fleet/serving-totals.ts';
import { StoreReportHistory } from '../../server/fleet/store-report-history.ts';
import type { AssignmentReport, BenchmarkReport, ModelRef } from '../../shared/protocol/payloads.ts';
import { freshStoreLocation, STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { storeFleetServer } from './store-fleet-server.ts';

/*
 * A benchmark a device measured for an assignment the server had replaced with a newer candidate
 * assignment (a rollout's, of the same version) by the time it arrived, delivered late from the
 * device's outbox: it is history, not the newer assignment's evidence. Not exported live, not in
 * the builtin provider's history, not restored after a restart, whatever retention deletes later;
 * the device's benchmark for the newer assignment is.
 */

const DEVICE = 'kobe-1';
const ref = (version: string): ModelRef => ({ model: 'iris', version, sha256: version.repeat(64).slice(0, 64) });
const at = (minute: number) => new Date(Date.UTC(2026, 2, 1, 9, minute)).toISOString();

function benchmark(id: string, assignmentId: string, createdAt: string, accuracy: number): BenchmarkReport {
  const model = <R extends 'active' | 'candidate'>(role: R, version: string, score: number) => ({
    ...ref(version), role, score: { accuracy: score, correct: Math.round(score * 30), total: 30 },
    latencyMs: { p50: 1, p95: 2, p99: 3, samples: 30 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  return { schema: 1, id, kind: 'benchmark', deviceId: DEVICE, createdAt, assignmentId, holdout: { rows: 30, fingerprint: 'f', task: 'classification' }, active: model('active', '1', 0.8), candidate: model('candidate', '2', accuracy) };
}

/** The candidate's exported accuracy, reports counter and report time, as `metric value` lines. */
async function candidateLines(registry: Registry): Promise<string[]> {
  const wanted = ['fleetprune_device_accuracy_ratio{', 'fleetprune_device_reports_total{', 'fleetprune_device_report_timestamp_seconds{'];
  return (await registry.metrics()).split('\n')
    .filter((line) => wanted.some((name) => line.startsWith(name)) && line.includes('role="candidate"'))
    .map((line) => `${line.slice(0, line.indexOf('{'))} ${line.split(' ').at(-1)}`)
    .sort();
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: a benchmark answering an assignment replaced before it arrived is kept in the history but is not exported, not in the builtin history, not restored; the newer assignment's benchmark is`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    let now = new Date(at(0));
    const first = await storeFleetServer(t, location, { clock: () => now, registered: [ref('1'), ref('2')] });
    const { fleet, ingest, registry } = first;
    let live = first; // the server the steps below talk to
    await fleet.repos.devices.insert({ id: DEVICE, labels: { cohort: 'pilot' }, secretHash: '$7$101$c2FsdA==$x', tokenId: 'tok-1', enrolledAt: at(0), enrolledBy: 'token:admin' });
    const issue = (id: string, version: string, role: 'active' | 'candidate', issuedAt: string) =>
      live.fleet.repos.assignments.insert({ id, deviceId: DEVICE, model: 'iris', version, artifactId: ref(version).sha256, role, issuedAt, issuedBy: 'token:op', state: 'published', reason: null, updatedAt: issuedAt });
    const answer = async (id: string, version: string, role: 'active' | 'candidate', outcome: AssignmentReport['outcome'], createdAt: string) => {
      const report: AssignmentReport = { schema: 1, id: `answer-${id}`, kind: 'assignment', deviceId: DEVICE, createdAt, assignmentId: id, outcome, role, model: 'iris', version, sha256: ref(version).sha256, reason: null };
      assert.equal(await live.ingest.ingestReport(report), 'ingested');
    };
    const seconds = (iso: string) => String(Date.parse(iso) / 1000);

    // v1 active; v2 assigned as the candidate by hand at 09:01 and benchmarked, received at 09:03.
    await issue('manual-1', '1', 'active', at(0));
    await answer('manual-1', '1', 'active', 'activated', at(0));
    await issue('manual-2', '2', 'candidate', at(1));
    await answer('manual-2', '2', 'candidate', 'installed', at(2));
    now = new Date(at(3));
    assert.equal(await ingest.ingestReport(benchmark('b-manual', 'manual-2', at(2), 0.9)), 'ingested');
    const exported = [`fleetprune_device_accuracy_ratio 0.9`, `fleetprune_device_report_timestamp_seconds ${seconds(at(3))}`, 'fleetprune_device_reports_total 1'];
    assert.deepEqual(await candidateLines(registry), exported);

    // A rollout of v2 starts at 09:10 and assigns it again. An active assignment of another version
    // (unanswered) replaces no candidate benchmark.
    await issue('rollout-a-1', '2', 'candidate', at(10));
    await issue('manual-3', '3', 'active', at(11));
    // The device was offline: its outbox delivers a second benchmark of the old assignment at 09:12.
    now = new Date(at(12));
    assert.equal(await ingest.ingestReport(benchmark('b-late', 'manual-2', at(5), 0.5)), 'ingested', 'stored, as any new report is');
    assert.deepEqual(await candidateLines(registry), exported, 'not exported: nothing moved, not even the report time');
    assert.equal(await ingest.ingestReport(benchmark('b-late', 'manual-2', at(5), 0.5)), 'duplicate', 'and stored once');
    const stored = await fleet.repos.reports.list({ kind: 'benchmark', clock: 'server' });
    assert.deepEqual(stored.map(({ report }) => report.id), ['b-manual', 'b-late'], 'both are in the device\'s history');
    const window = { since: new Date(at(0)), until: new Date(at(59)) };
    const candidateHistory = async (on: FleetStore) => (await new StoreReportHistory(on).reports(window)).filter((report) => report.role === 'candidate').map((report) => `${report.accuracy} ${report.ts.toISOString()}`);
    assert.deepEqual(await candidateHistory(fleet), [`0.9 ${at(3)}`], 'the builtin provider\'s history keeps the one received before the replacement');

    // A restart (or a standby elected) exports what the live server did.
    await first.store.close();
    const second = await storeFleetServer(t, location, { clock: () => now, registered: [ref('1'), ref('2')] });
    live = second;
    await restoreExports(second.exporter, second.fleet.repos);
    assert.deepEqual(await candidateLines(second.registry), exported, 'restored as exported: the late one is not evidence');
    const { reportTotals } = (await second.fleet.repos.devices.get(DEVICE))!;
    assert.ok(reportTotals !== null && reportTotals.some((total) => total.role === 'candidate' && total.latest.accuracy === 0.9), `stored totals keep the earlier benchmark: ${JSON.stringify(reportTotals)}`);
    assert.deepEqual((await second.fleet.repos.reports.latestBenchmarks()).map(({ report }) => report.id), ['b-manual'], 'the latest benchmark to seed from is the evidence');

    // The device benchmarks for the rollout's assignment: that one is exported, and counts.
    now = new Date(at(14));
    assert.equal(await second.ingest.ingestReport(benchmark('b-rollout', 'rollout-a-1', at(13), 0.7)), 'ingested');
    assert.deepEqual(await candidateLines(second.registry), ['fleetprune_device_accuracy_ratio 0.7', `fleetprune_device_report_timestamp_seconds ${seconds(at(14))}`, 'fleetprune_device_reports_total 2']);
    assert.deepEqual(await candidateHistory(second.fleet), [`0.9 ${at(3)}`, `0.7 ${at(14)}`]);

    // A newer candidate assignment the device refused replaces nothing: the candidate it keeps
    // benchmarked again (its active model changed, say) for the assignment it holds is evidence.
    await issue('manual-4', '3', 'candidate', at(15));
    await answer('manual-4', '3', 'candidate', 'refused', at(16));
    now = new Date(at(17));
    assert.equal(await second.ingest.ingestReport(benchmark('b-again', 'rollout-a-1', at(16), 0.75)), 'ingested');
    assert.deepEqual(await candidateLines(second.registry), ['fleetprune_device_accuracy_ratio 0.75', `fleetprune_device_report_timestamp_seconds ${seconds(at(17))}`, 'fleetprune_device_reports_total 3']);

    // The verdict is kept with each report: retention deleting the assignments it rested on changes no rebuild.
    assert.ok((await second.fleet.repos.assignments.deleteAnsweredBefore(new Date(at(59)))) >= 3, 'the answered assignments deleted');
    assert.deepEqual(await candidateHistory(second.fleet), [`0.9 ${at(3)}`, `0.7 ${at(14)}`, `0.75 ${at(17)}`]);
    assert.deepEqual((await second.fleet.repos.reports.latestBenchmarks()).map(({ report }) => report.id), ['b-again']);
    assert.deepEqual((await second.fleet.repos.reports.list({ kind: 'benchmark', clock: 'server' })).map(({ report }) => report.id), ['b-manual', 'b-late', 'b-rollout', 'b-again'], 'the history holds every one');
  });
}
