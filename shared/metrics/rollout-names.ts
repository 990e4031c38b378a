/**
 * Prometheus metric names of staged rollouts: what the rollout controller exports about its
 * decisions, and the per-device report series the server exports (and the builtin provider
 * synthesizes from report history) so the same analysis queries run on either provider.
 */
export const ROLLOUT_METRICS = {
  /** Gauge: index of the step the rollout is on (steps.length once fully promoted). */
  step: 'fleetprune_rollout_step',
  /** Gauge: percent of the rollout's target devices carrying the candidate. */
  weight: 'fleetprune_rollout_weight_percent',
  /** Gauge: devices of the rollout that timed out into "unreachable". */
  unreachableDevices: 'fleetprune_rollout_unreachable_devices',
  /** Gauge: the last value an analysis metric measured (the median of a vector result). */
  analysisValue: 'fleetprune_analysis_value',
  /** Gauge: the threshold an analysis metric's last value was compared with. */
  analysisThreshold: 'fleetprune_analysis_threshold',
  /** Counter: decisions (measurements, step changes, promotions, rollbacks) by verdict. */
  decisions: 'fleetprune_rollout_decisions_total',
  /**
   * Gauge: when the latest decision with these labels was made (Unix seconds), by the decision's
   * own time: alerts on "failed in the last 15 minutes" hold across scrape gaps and for a
   * rollout that fails before its first scrape, where increase() on the counter sees nothing.
   */
  decisionTimestamp: 'fleetprune_rollout_decision_timestamp_seconds',
  /** Gauge: actions of the rollout whose last attempt failed, waiting for a retry (a revert that cannot reach the store or broker). */
  failingActions: 'fleetprune_rollout_failing_actions',
  /** Gauge: 1 while this server drives the rollouts (the leader, its rollouts recovered: it takes rollout commands, and what needs an external broker waits for it); 0 on a standby, while it takes over, and after a takeover failed. */
  leader: 'fleetprune_rollout_leader',
  /** Counter: takeovers of the rollouts this server finished, the broker side included (its first election included): more than one is a failover to it; one that failed is not counted. */
  takeovers: 'fleetprune_rollout_takeovers_total',
} as const;

/**
 * Per-device benchmark series (labels: model, version, role, cohort, device). Gauges hold the
 * latest report's value; counters accumulate over reports.
 */
export const DEVICE_REPORT_METRICS = {
  /** Gauge: accuracy of the model on the device's holdout, as a ratio in [0, 1] (classifiers). */
  accuracy: 'fleetprune_device_accuracy_ratio',
  /** Gauge: mean squared error of the model on the device's holdout, in label units squared (regressors). */
  mse: 'fleetprune_device_mse',
  latencyP50: 'fleetprune_device_latency_p50_seconds',
  latencyP95: 'fleetprune_device_latency_p95_seconds',
  latencyP99: 'fleetprune_device_latency_p99_seconds',
  /** Gauge: failed over attempted predictions in the latest heartbeat interval with traffic (0 from a benchmark). */
  errorRatio: 'fleetprune_device_error_ratio',
  /** Counter: rows the device predicted with the model: benchmark holdout rows, and rows served (active) or shadow-run (candidate). */
  predictions: 'fleetprune_device_predictions_total',
  /**
   * Counter: rows the device served (active) or ran in shadow (candidate), failed ones included:
   * the predictions counter without the benchmarks' holdout rows (at 0 once the device benchmarked
   * the model), the denominator of a served error ratio (fleetprune-candidate-errors).
   */
  servedPredictions: 'fleetprune_device_served_predictions_total',
  /** Counter: rows whose prediction failed on the device: served rows (active), shadow-run rows (candidate). */
  errors: 'fleetprune_device_prediction_errors_total',
  /** Counter: benchmark reports received from the device for the model. */
  reports: 'fleetprune_device_reports_total',
  /**
   * Gauge: when the server received the benchmark behind the label set's gauges (Unix seconds, the
   * server's clock: a device's own may be off; for served rows alone, their heartbeat's receipt).
   * The gauges hold the latest report's value for as long as the label set stays, and Prometheus
   * scrapes it again and again: a relative check keeps to devices whose report is from after the
   * rollout's start by this, not by the window alone (an earlier rollout's report of the same
   * version would otherwise be this rollout's evidence).
   */
  reportTimestamp: 'fleetprune_device_report_timestamp_seconds',
} as const;

/**
 * The labels of the per-device series. `fleet` is the id of the server's signing key (the same on
 * every server of one fleet, sharing its database and data dir): fleets that share a Prometheus
 * (staging and production, a rebuilt server) and reuse device ids and model names have their own
 * series, and a rollout's analysis reads only its fleet's.
 */
export const DEVICE_REPORT_LABELS = ['model', 'version', 'role', 'cohort', 'device', 'fleet'] as const;
