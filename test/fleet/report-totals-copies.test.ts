import assert from 'node:assert/strict';
import { test } from 'node:test';
import { latestReportOf, reportTotalsMoved } from '../../server/fleet/report-totals.ts';
import type { ReportTotal } from '../../server/metricproviders/report-history.ts';

const candidate = (latest: Partial<ReportTotal['latest']> = {}): ReportTotal => ({
  model: 'iris', version: '2', role: 'candidate', cohort: 'pilot', predictions: 30, errors: 0, reports: 1,
  latest: { accuracy: 0.9, mse: null, latencyMs: { p50: 1, p95: 2, p99: 3 }, predictions: 30, errors: 0, ts: '2026-03-01T11:49:00.000Z', ...latest },
  at: '2026-03-01T11:50:00.000Z',
});
const promoted = { active: { model: 'iris', version: '2', sha256: 'a'.repeat(64) }, candidate: null };

test("a promotion's active copy keeps its candidate benchmark's receipt as its report time, also from a total stored before receipts were kept (its `at`), not the promotion's", () => {
  for (const [total, received] of [
    [candidate({ receivedAt: '2026-03-01T11:50:00.000Z' }), '2026-03-01T11:50:00.000Z'],
    [candidate(), '2026-03-01T11:50:00.000Z'], // stored by an earlier server: no latest.receivedAt
  ] as const) {
    const moved = reportTotalsMoved([total], [], promoted, '2026-03-01T11:59:00.000Z', '2026-03-01T12:00:00.000Z');
    const copy = moved.find((entry) => entry.role === 'active');
    assert.equal(copy?.at, '2026-03-01T12:00:00.000Z', 'stored when the promotion arrived');
    assert.equal(latestReportOf('d1', copy!).receivedAt?.toISOString(), received, 'restored with the benchmark\'s receipt');
  }
});
