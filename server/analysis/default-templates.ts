import type { AnalysisTemplateInput } from './metric-definition.ts';

/**
 * Analysis templates every rollout can name without defining them. A spec's own
 * `analysisTemplates` win over these on a name clash. Their queries use only the PromQL subset
 * the builtin provider evaluates, over the per-device report series (DEVICE_REPORT_METRICS).
 * The relative checks wait one interval (initialDelay) so freshly assigned devices have
 * benchmarked the candidate before the first measurement.
 */
export const DEFAULT_ANALYSIS_TEMPLATES: readonly AnalysisTemplateInput[] = [
  {
    name: 'fleetprune-accuracy',
    metrics: [{ name: 'accuracy', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'accuracy' } }],
  },
  {
    /** For regression models: the candidate's holdout MSE against the active model's. */
    name: 'fleetprune-mse',
    metrics: [{ name: 'mse', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'mse' } }],
  },
  {
    name: 'fleetprune-latency',
    metrics: [{ name: 'latency-p95', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'latency_p95' } }],
  },
  {
    name: 'fleetprune-error-rate',
    metrics: [{ name: 'error-rate', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'error_rate' } }],
  },
  {
    /** The three relative checks of issue #5 together. */
    name: 'fleetprune-relative',
    metrics: [
      { name: 'accuracy', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'accuracy' } },
      { name: 'latency-p95', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'latency_p95' } },
      { name: 'error-rate', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'error_rate' } },
    ],
  },
  {
    /** The same for regression models: MSE in place of accuracy. */
    name: 'fleetprune-relative-regression',
    metrics: [
      { name: 'mse', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'mse' } },
      { name: 'latency-p95', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'latency_p95' } },
      { name: 'error-rate', interval: '1m', initialDelay: '1m', count: 3, relative: { metric: 'error_rate' } },
    ],
  },
  {
    /** Absolute ceiling on the candidate's prediction error ratio across its cohort. */
    name: 'fleetprune-candidate-errors',
    args: [{ name: 'maxErrorRatio', value: '0.01' }],
    metrics: [
      {
        name: 'candidate-error-ratio',
        interval: '1m',
        // As the relative checks: measured at once, a fresh cohort has not reported yet, and the
        // empty result is Inconclusive, which pauses the rollout.
        initialDelay: '1m',
        count: 3,
        successCondition: 'result[0] <= maxErrorRatio',
        provider: {
          prometheus: {
            // Served rows only: the candidate's shadow runs (fleetprune_device_served_predictions_total),
            // not the benchmarks' holdout rows, which fleetprune_device_predictions_total also
            // counts and whose errors are 0 (a benchmark that fails is a benchmark-failed answer,
            // which fails the rollout on its own): with them a cohort that ran nothing in shadow
            // passed on its benchmarks, and minSamples guarded nothing. Totals, not rate(): an agent
            // benchmarks a version once, so on a real Prometheus a device's counter series may start
            // at its final value and never grow. Totals survive a server restart or failover: the
            // server exports them again from the store (what heartbeats added included), so shadow
            // errors counted before still count.
            query:
              'sum(fleetprune_device_prediction_errors_total{model="{{args.model}}",version="{{args.candidateVersion}}",role="candidate",device=~"{{args.cohort}}",fleet="{{args.fleet}}"})' +
              ' / sum(fleetprune_device_served_predictions_total{model="{{args.model}}",version="{{args.candidateVersion}}",role="candidate",device=~"{{args.cohort}}",fleet="{{args.fleet}}"})',
            samplesQuery: 'sum(fleetprune_device_served_predictions_total{model="{{args.model}}",version="{{args.candidateVersion}}",role="candidate",device=~"{{args.cohort}}",fleet="{{args.fleet}}"})',
          },
        },
        minSamples: 100,
      },
    ],
  },
];
