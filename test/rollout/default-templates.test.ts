import { it } from 'node:test';
import assert from 'node:assert/strict';
import { AnalysisRun } from '../../server/analysis/analysis-run.ts';
import type { RunAssessment } from '../../server/analysis/analysis-assessment.ts';
import type { Measurement } from '../../server/analysis/measurement.ts';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';

it('the candidate-errors template gives a freshly assigned cohort time to report before it measures (no Inconclusive pause at once)', async () => {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ setWeight: 25 }, { analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }] } }] });
  const metrics = (spec.steps[1] as { metrics: readonly AnalysisMetric[] }).metrics;
  const start = Date.UTC(2026, 0, 1);
  const scheduler = new ManualScheduler(start);
  // The cohort's devices install the candidate, then benchmark it and report: the server (or
  // Prometheus, a scrape later) has their candidate counters some 30 s after the step began.
  const provider = new ScriptedProvider([
    (query, context) => {
      const reported = context.now.getTime() >= start + 30_000;
      const value = query.startsWith('sum(fleetprune_device_prediction_errors_total') ? 0 : 400; // 0 errors in 400 predictions
      return { resultType: 'vector', samples: reported ? [{ labels: {}, value }] : [] };
    },
  ]);
  const seen: Measurement[] = [];
  const completed: RunAssessment[] = [];
  const run = new AnalysisRun({
    metrics,
    providers: new MetricProviderResolver({ builtin: provider }),
    scheduler,
    context: { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2'], args: { model: 'wine', candidateVersion: '2', rollout: 'r', cohort: 'd1|d2', cohortSize: '2', step: '1' } },
    onMeasurement: (measurement) => void seen.push(measurement),
    onComplete: (assessment) => void completed.push(assessment),
  });
  run.start();
  for (let elapsed = 0; elapsed <= 10 * 60_000 && completed.length === 0; elapsed += 10_000) await scheduler.advance(10_000);
  assert.deepEqual(seen.map((measurement) => measurement.phase), ['Successful', 'Successful', 'Successful'], seen.map((measurement) => measurement.message).join('; '));
  assert.equal(completed[0]?.phase, 'Successful');
});
