/**
 * The demo's rollout: the pilot devices (label pilot=true) get the candidate, the built-in
 * relative checks compare it with the baseline on those devices (accuracy ≥ baseline − 0.5
 * points and error rate ≤ baseline + 0.1%, each backed by a Mann-Whitney U test), then half the
 * fleet, a second analysis, and everyone. Intervals are seconds rather than the production
 * minutes so the demo ends in under a minute. The p95 latency check (≤ baseline × 1.1) is left
 * out here only because the simulated devices share this machine's two cores: their latencies
 * measure each other's load, not the models (the summary still shows them).
 */
export function demoRolloutSpec(model: string, candidateVersion: string): Record<string, unknown> {
  const relative = (name: string, metric: string) => ({
    name,
    interval: '3s',
    initialDelay: '2s',
    count: 2,
    relative: { metric, window: '5m' },
  });
  const analysis = { analysis: { metrics: [relative('accuracy', 'accuracy'), relative('error-rate', 'error_rate')] } };
  return {
    apiVersion: 'fleetprune/v1',
    kind: 'Rollout',
    model,
    candidateVersion,
    target: { matchLabels: {} },
    steps: [{ selector: { matchLabels: { pilot: 'true' } } }, analysis, { setWeight: 50 }, analysis, { setWeight: 100 }],
    offline: { initialBackoff: '2s', maxBackoff: '5s', maxAttempts: 3 },
  };
}
