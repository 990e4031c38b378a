import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceReportsFromBenchmark } from '../../server/metricproviders/benchmark-report-adapter.ts';
import { BenchmarkReportSchema } from '../../shared/protocol/payloads.ts';

describe('deviceReportsFromBenchmark', () => {
  it('turns a protocol benchmark report into candidate and active DeviceReports', () => {
    const model = (role: 'candidate' | 'active', version: string, accuracy: number) => ({
      model: 'wine', version, sha256: 'a'.repeat(64), role, score: { accuracy, correct: Math.round(accuracy * 40), total: 40 },
      latencyMs: { p50: 1, p95: 2.5, p99: 4, samples: 40 }, batchSize: 1, throughputRowsPerSecond: 400, loadTimeMs: 12, rssIncreaseBytes: 0,
    });
    const report = BenchmarkReportSchema.parse({
      schema: 1, id: 'report-0001', deviceId: 'dev-1', createdAt: '2026-01-01T00:00:00.000Z', kind: 'benchmark', assignmentId: null,
      holdout: { rows: 40, fingerprint: 'f', task: 'classification' },
      active: model('active', '1', 0.95), candidate: model('candidate', '2', 0.9),
    });
    const reports = deviceReportsFromBenchmark(report, 'pilot');
    assert.deepEqual(reports.map((r) => [r.role, r.version, r.accuracy, r.predictions, r.latencyMs.p95, r.cohort]), [
      ['active', '1', 0.95, 40, 2.5, 'pilot'],
      ['candidate', '2', 0.9, 40, 2.5, 'pilot'],
    ]);
    assert.equal(reports[0]!.ts.toISOString(), '2026-01-01T00:00:00.000Z');
  });
});
