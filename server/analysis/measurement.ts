/**
 * One measurement of an analysis metric, with everything that went into its verdict: the
 * queries as sent, the values, the thresholds and the verdict. It is the decision log's unit.
 */
export const MEASUREMENT_PHASES = ['Successful', 'Failed', 'Inconclusive', 'Error'] as const;
export type MeasurementPhase = (typeof MEASUREMENT_PHASES)[number];

export interface RelativeEvidence {
  readonly metric: string;
  readonly unit: string;
  readonly comparator: '>=' | '<=';
  readonly tolerance: number;
  readonly toleranceMode: 'absolute' | 'relative';
  readonly confidence: number;
  /** Per-device values, in device order. */
  readonly candidate: readonly { readonly device: string; readonly value: number }[];
  readonly baseline: readonly { readonly device: string; readonly value: number }[];
  readonly candidateMedian: number;
  readonly baselineMedian: number;
  /**
   * bound(baseline median): e.g. baseline − 0.5 points. Context, as the medians are (and what the
   * dashboard charts and fleetprune_analysis_threshold shows): the verdict is on the per-device
   * differences (shift, meanShift), each device's candidate against its own baseline's bound.
   */
  readonly bound: number;
  /** The median of the per-device differences candidate − bound (≥ 0 is fine for >=, ≤ 0 for <=). */
  readonly shift: number;
  /**
   * The mean of the per-device differences candidate − bound: with the median on the good side
   * too, the check passes. Absent from measurements stored by earlier servers.
   */
  readonly meanShift?: number;
  /**
   * With a relative tolerance: the mean of the per-device differences each as a share of its
   * device's baseline (0.8: 80% of the baseline), which the check then uses instead of meanShift,
   * so that devices with large values do not outweigh the others. Absent otherwise.
   */
  readonly meanShare?: number;
  /** Devices outside tolerance (their difference on the bad side). Absent from earlier measurements. */
  readonly outside?: number;
  /**
   * The device with the worst difference candidate − bound (with a relative tolerance: the worst
   * as a share of its baseline, `share`). Absent from earlier measurements.
   */
  readonly worst?: { readonly device: string; readonly margin: number; readonly share?: number };
  /** The verdict's p: the smaller of the two tests' p-values, doubled (Bonferroni), at most 1. */
  readonly p: number;
  /** One-sided Wilcoxon signed-rank test that the per-device differences are on the worse side. */
  readonly wilcoxon: { readonly w: number; readonly z: number; readonly p: number; readonly method: 'exact' | 'asymptotic' };
  /** One-sided Mann-Whitney U test that the candidate values are worse than the bounds, unpaired. */
  readonly mannWhitney: { readonly u: number; readonly z: number; readonly p: number; readonly method: 'exact' | 'asymptotic' };
}

export interface Measurement {
  readonly metric: string;
  /** 0-based, per metric. */
  readonly index: number;
  readonly phase: MeasurementPhase;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly provider: string;
  readonly queries: Readonly<Record<string, string>>;
  /** The result vector's values (a scalar is one value); null when the query failed. */
  readonly value: readonly number[] | null;
  readonly baseline?: readonly number[];
  /** Samples behind the result, compared with minSamples. */
  readonly samples?: number;
  readonly thresholds: {
    readonly successCondition?: string;
    readonly failureCondition?: string;
    /** The number the success condition compares with, when it has one. */
    readonly success?: number;
    readonly failure?: number;
    readonly minSamples: number;
  };
  readonly relative?: RelativeEvidence;
  /** One line: why this verdict. */
  readonly message: string;
  /**
   * Set when the measurement was taken later than it fell due because the server had just taken
   * over the rollouts (a restart, a new leader) and gave Prometheus its start-up grace to scrape
   * it again (see AnalysisRunOptions.holdOff): when it was due, until when it waited, and why.
   */
  readonly waited?: { readonly dueAt: string; readonly until: string; readonly reason: string };
  /**
   * Set when the per-device evidence was removed after --report-retention-days (see
   * trimMeasurementEvidence): value and baseline then hold their medians (means, if trimmed by an
   * earlier server), the relative check's
   * per-device lists are empty, and long queries are cut. Verdict, medians, bound and p stay.
   */
  readonly trimmed?: { readonly at: string; readonly devices: number };
}
