/**
 * The demo's rollout: the pilot devices (label pilot=true) get the candidate, the built-in
 * relative checks compare it with the baseline on those devices (accuracy ≥ baseline − 0.5
 * points for a classifier, MSE ≤ baseline × 1.02 for a regression model, and error rate ≤
 * baseline + 0.1%, each backed by a Mann-Whitney U test), then three quarters of the fleet (the
 * pilot is half of it: a 50% step would add no device), a second analysis, and everyone. Intervals are seconds rather than the production
 * minutes so the demo ends in under a minute. The p95 latency check (≤ baseline × 1.1) is left
 * out here only because the simulated devices share this machine's two cores: their latencies
 * measure each other's load, not the models (the summary still shows them).
 */
/**
 * With a Prometheus (demo --prometheus-url) the analyses wait for it to scrape the pilot's first
 * benchmark reports: the shipped config scrapes fleetprune every 10 s, so the first measurement
 * comes 30 s into a step (two scrapes and a margin) and the next 15 s later. The builtin provider
 * reads the reports as they arrive, so its measurements start after 2 s.
 */
export const DEMO_ANALYSIS_TIMING = {
  builtin: { interval: '3s', initialDelay: '2s' },
  prometheus: { interval: '15s', initialDelay: '30s' },
} as const;

export function demoRolloutSpec(
  model: string,
  candidateVersion: string,
  provider: keyof typeof DEMO_ANALYSIS_TIMING = 'builtin',
  task: 'classification' | 'regression' = 'classification',
): Record<string, unknown> {
  const relative = (name: string, metric: string) => ({
    name,
    ...DEMO_ANALYSIS_TIMING[provider],
    count: 2,
    relative: { metric, window: '5m' },
  });
  const quality = task === 'regression' ? relative('mse', 'mse') : relative('accuracy', 'accuracy');
  const analysis = { analysis: { metrics: [quality, relative('error-rate', 'error_rate')] } };
  return {
    apiVersion: 'fleetprune/v1',
    kind: 'Rollout',
    model,
    candidateVersion,
    target: { matchLabels: {} },
    steps: [{ selector: { matchLabels: { pilot: 'true' } } }, analysis, { setWeight: 75 }, analysis, { setWeight: 100 }],
    offline: { initialBackoff: '2s', maxBackoff: '5s', maxAttempts: 3 },
  };
}
