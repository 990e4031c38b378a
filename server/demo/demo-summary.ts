import type { Manifest } from '../../shared/artifact/manifest.ts';
import { FleetStore } from '../fleet/fleet-store.ts';
import { StoreReportHistory } from '../fleet/store-report-history.ts';
import type { DeviceReport } from '../metricproviders/report-history.ts';
import type { DemoResult } from './demo-run.ts';

/** The verdict each decision kind always has, left out of the summary's lines. */
const RESTATED: Record<string, string> = { failure: 'failed', rollback: 'rolled-back' };

/** What `--summary-json` writes, for scripts. */
export function summaryJson(result: DemoResult): { rollouts: { candidate: string; outcome: string; phase: string; reason: string }[] } {
  // `phase` tells a candidate the rollout failed (Failed: an analysis, or devices refusing it) from one rolled back as an operator would (RolledBack): both are outcome rolled_back.
  return { rollouts: result.rollouts.map(({ candidate, outcome, phase, reason }) => ({ candidate, outcome, phase, reason })) };
}

/** The terminal summary: model sizes, accuracy and latency on the devices, and the decisions. */
export async function formatDemoSummary(result: DemoResult): Promise<string> {
  const { models, versions } = result;
  const history = new StoreReportHistory(new FleetStore(result.server.ctx.store));
  const reports = await history.reports({ since: new Date(0), until: new Date() });
  const rows: [string, string, Manifest, number | null][] = [
    [versions.general, 'general (baseline)', models.general.manifest, null],
    [versions.good, 'ODF2NNA, ε chosen by the sweep', models.good.manifest, models.good.report.epsilon],
    [versions.overPruned, 'over-pruned', models.overPruned.manifest, models.overPruned.report.epsilon],
  ];
  const model = models.general.manifest.name;
  const lines = [
    '',
    [
      `  ${`Models (${model})`.padEnd(31)}`,
      'version'.padEnd(8),
      'ε'.padEnd(5),
      'layers'.padEnd(18),
      'params'.padStart(7),
      'FLOPs/sample'.padStart(13),
      'test (server)'.padStart(14),
      `devices: ${models.general.manifest.task === 'regression' ? 'mse' : 'accuracy'}`.padStart(17),
      'p95 ms'.padStart(7),
    ].join(' '),
  ];
  for (const [version, role, manifest, epsilon] of rows) {
    const onDevices = reports.filter((r) => r.model === model && r.version === version);
    lines.push(
      [
        `  ${role.padEnd(31)}`,
        version.padEnd(8),
        (epsilon === null ? '—' : String(epsilon)).padEnd(5),
        manifest.architecture.layers.join('-').padEnd(18),
        String(manifest.architecture.params).padStart(7),
        String(manifest.architecture.flopsPerSample).padStart(13),
        formatTest(manifest.metrics.test).padStart(14),
        formatDevices(onDevices),
      ].join(' '),
    );
  }
  lines.push('', 'Rollouts (decision times in UTC)');
  for (const rollout of result.rollouts) {
    // A candidate whose analysis failed is `Failed` in rollout list and status, and `failed` in models list: so here.
    const outcome = rollout.outcome === 'promoted' ? 'PROMOTED' : rollout.phase === 'Failed' ? 'FAILED, ROLLED BACK' : 'ROLLED BACK';
    lines.push(`  ${rollout.candidate} (ε ${rollout.epsilon}): ${outcome}: ${rollout.reason}`);
    for (const decision of rollout.decisions) {
      // "failure failed", "rollback rolled-back" say the same twice: the kind alone then.
      const head = RESTATED[decision.kind] === decision.verdict ? decision.kind : `${decision.kind} ${decision.verdict}`;
      lines.push(`    ${decision.at.slice(11, 19)} ${head}: ${decision.message}`);
    }
  }
  const online = result.devices.filter((d) => d.online).length;
  const byVersion = new Map<string, number>();
  for (const device of result.devices) {
    const key = device.active ? `@${device.active.version}` : 'none';
    byVersion.set(key, (byVersion.get(key) ?? 0) + 1);
  }
  lines.push('', `Fleet: ${online}/${result.devices.length} online; active ${[...byVersion].map(([v, n]) => `${model}${v} on ${n}`).join(', ')}`, '');
  return lines.join('\n');
}

function formatTest(metrics: Manifest['metrics']['test']): string {
  if (metrics.accuracy !== undefined) return `${(metrics.accuracy * 100).toFixed(1)}%`;
  if (metrics.mse !== undefined) return `mse ${metrics.mse.toFixed(0)}`;
  return '';
}

/**
 * The mean over the devices that benchmarked the version, and the median of their p95 latencies:
 * one value per device, its newest report's. A pilot device benchmarks a version twice (as the
 * candidate, then as the active model beside the next candidate); a mean over reports counted it twice.
 */
export function formatDevices(allReports: readonly DeviceReport[]): string {
  const newest = new Map<string, DeviceReport>();
  for (const report of allReports) {
    const seen = newest.get(report.deviceId);
    if (!seen || report.ts.getTime() >= seen.ts.getTime()) newest.set(report.deviceId, report);
  }
  const reports = [...newest.values()];
  if (reports.length === 0) return '  (no device reports)';
  const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const accuracies = reports.map((r) => r.accuracy).filter((a): a is number => a !== null);
  const errors = reports.map((r) => r.mse).filter((m): m is number => typeof m === 'number');
  const accuracy = accuracies.length ? `${(mean(accuracies) * 100).toFixed(1)}%` : errors.length ? mean(errors).toFixed(0) : '—';
  const p95 = reports.map((r) => r.latencyMs.p95).sort((a, b) => a - b)[Math.floor(reports.length / 2)]!;
  return `${accuracy.padStart(17)} ${p95.toFixed(3).padStart(7)}  (${reports.length} devices)`;
}
