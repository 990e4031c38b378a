import { z } from 'zod';
import { DURATION_HINT, parseDuration } from '../../shared/util/duration.ts';
import type { ParsedCondition } from './condition/condition-parser.ts';

/**
 * An analysis metric as written in a rollout spec or template (modelled on Argo Rollouts'
 * AnalysisTemplate metric), and the resolved form the analysis engine runs.
 */
/** A number where a duration belongs has no unit: said so (quoting it, as the string hint would say, still has none). */
export const DurationSchema = z
  .string({ error: (issue) => (typeof issue.input === 'number' ? `${DURATION_HINT}, with its unit (${issue.input} has none: "${issue.input}s"?)` : undefined) })
  .refine((text) => parseDuration(text) !== undefined, DURATION_HINT);

/** A condition is an expression over `result`: a bare number or boolean is none. */
const ConditionSchema = z.string({
  error: (issue) => (typeof issue.input === 'number' || typeof issue.input === 'boolean' ? `must be a condition over the result, such as "result[0] >= 0.9", not ${String(issue.input)} alone` : undefined),
});

const NAME = /^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$/;
export const MetricNameSchema = z.string().regex(NAME, 'must be 1-63 characters of a-z 0-9 _ - (starting and ending with a letter or digit)');

export const PROVIDER_KINDS = ['prometheus', 'builtin'] as const;
export type ProviderKind = (typeof PROVIDER_KINDS)[number];

const QueryProviderSchema = z.strictObject({
  /** PromQL; `{{args.NAME}}` is replaced by the argument's value at measurement time. */
  query: z.string().trim().min(1, 'must not be empty'),
  /** PromQL whose value is `baseline` in the conditions. */
  baselineQuery: z.string().trim().min(1, 'must not be empty').optional(),
  /** PromQL whose value is the number of samples behind the result, checked against minSamples. */
  samplesQuery: z.string().trim().min(1, 'must not be empty').optional(),
  timeout: DurationSchema.optional(),
  /** Argo Rollouts' Prometheus provider takes its address here; fleetprune's is the server's (--prometheus-url). */
  address: z.never({ error: "is not part of a spec: the server's --prometheus-url (or FLEETPRUNE_PROMETHEUS_URL) says where Prometheus is" }).optional(),
});
export type QueryProviderInput = z.infer<typeof QueryProviderSchema>;

export const ProviderSchema = z
  .strictObject({ prometheus: QueryProviderSchema.optional(), builtin: QueryProviderSchema.optional() })
  .superRefine((provider, ctx) => {
    const given = PROVIDER_KINDS.filter((kind) => provider[kind] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({ code: 'custom', message: `must name exactly one provider (${PROVIDER_KINDS.join(' or ')}), found ${given.length === 0 ? 'none' : given.join(' and ')}` });
    }
  });

export const RELATIVE_METRICS = ['accuracy', 'mse', 'latency_p95', 'error_rate'] as const;
export type RelativeMetricName = (typeof RELATIVE_METRICS)[number];
export const COMPARATORS = ['>=', '<='] as const;
export type Comparator = (typeof COMPARATORS)[number];
export const TOLERANCE_MODES = ['absolute', 'relative'] as const;
export type ToleranceMode = (typeof TOLERANCE_MODES)[number];

/**
 * Defaults of the built-in relative checks, in the units the check compares: accuracy in
 * points (0-100), MSE in the label's units squared, p95 latency in milliseconds, error rate in
 * percent (0-100).
 */
export const RELATIVE_DEFAULTS: Readonly<Record<RelativeMetricName, { comparator: Comparator; tolerance: number; toleranceMode: ToleranceMode; unit: string }>> = {
  /** accuracy ≥ baseline − 0.5 points */
  accuracy: { comparator: '>=', tolerance: 0.5, toleranceMode: 'absolute', unit: 'points' },
  /** MSE ≤ baseline × 1.02 (regression models; the pruning's default tolerance) */
  mse: { comparator: '<=', tolerance: 0.02, toleranceMode: 'relative', unit: 'label units²' },
  /** p95 latency ≤ baseline × 1.1 */
  latency_p95: { comparator: '<=', tolerance: 0.1, toleranceMode: 'relative', unit: 'ms' },
  /** error rate ≤ baseline + 0.1 percent */
  error_rate: { comparator: '<=', tolerance: 0.1, toleranceMode: 'absolute', unit: '%' },
};
export const DEFAULT_CONFIDENCE = 0.95;
export const DEFAULT_RELATIVE_MIN_SAMPLES = 4;

export const RelativeCheckSchema = z.strictObject({
  metric: z.enum(RELATIVE_METRICS),
  comparator: z.enum(COMPARATORS).optional(),
  tolerance: z.number().min(0, 'must be ≥ 0').refine(Number.isFinite, 'must be finite').optional(),
  toleranceMode: z.enum(TOLERANCE_MODES).optional(),
  /** Confidence of the one-sided Mann-Whitney U test that the candidate is worse (0.5, 1). */
  confidence: z.number().gt(0.5, 'must be > 0.5').lt(1, 'must be < 1').optional(),
  /** How far back each measurement looks at per-device reports; defaults to the interval, or 5m. */
  window: DurationSchema.optional(),
}).superRefine((check, ctx) => {
  // Each metric has one good direction: the other comparator would pass a worse candidate (an MSE 4× its baseline's).
  const good = RELATIVE_DEFAULTS[check.metric].comparator;
  if (check.comparator !== undefined && check.comparator !== good) {
    const better = good === '>=' ? 'higher' : 'lower';
    ctx.addIssue({
      code: 'custom',
      path: ['comparator'],
      message: `"${check.comparator}" would pass a candidate worse than its baseline: a ${better} ${check.metric} is better, so the check is "${good}" (leave comparator out for it)`,
    });
  }
});

const Count = z.number().int('must be an integer');
/** The most measurements one metric may take (a week of one per minute). */
export const MAX_MEASUREMENTS = 10_080;
export const MetricSchema = z.strictObject({
  name: MetricNameSchema,
  interval: DurationSchema.optional(),
  initialDelay: DurationSchema.optional(),
  /**
   * Measurements without Error to take (Argo's count; Errors are retried and do not count). At most
   * MAX_MEASUREMENTS: every measurement is kept in the analysis run and the decision log (and at
   * most MAX_MEASUREMENTS Errors besides, see assessMetric).
   */
  count: Count.min(1, 'must be ≥ 1').max(MAX_MEASUREMENTS, `must be ≤ ${MAX_MEASUREMENTS}`).optional(),
  successCondition: ConditionSchema.optional(),
  failureCondition: ConditionSchema.optional(),
  /** Failed measurements tolerated; the metric fails at failureLimit + 1. -1 disables. */
  failureLimit: Count.min(-1, 'must be ≥ -1').optional(),
  /** Inconclusive measurements tolerated. -1 disables. */
  inconclusiveLimit: Count.min(-1, 'must be ≥ -1').optional(),
  /** Consecutive Error measurements tolerated (each is retried: an interval later, or 10 s without one). -1 disables. */
  consecutiveErrorLimit: Count.min(-1, 'must be ≥ -1').optional(),
  /** Succeed as soon as this many consecutive measurements succeed; 0 disables. */
  consecutiveSuccessLimit: Count.min(0, 'must be ≥ 0').optional(),
  /** Fewer samples than this makes a measurement Inconclusive. */
  minSamples: Count.min(1, 'must be ≥ 1').optional(),
  provider: ProviderSchema.optional(),
  relative: RelativeCheckSchema.optional(),
});
export type MetricInput = z.infer<typeof MetricSchema>;

export const ArgSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be an identifier: A-Z a-z 0-9 _ (not starting with a digit)')
    // As a key it sets the arguments' prototype: the argument vanished, its queries read "[object Object]".
    .refine((name) => name !== '__proto__', 'must not be "__proto__"'),
  value: z.union([z.string(), z.number()]).optional(),
});

export const AnalysisTemplateSchema = z.strictObject({
  name: MetricNameSchema,
  args: z.array(ArgSchema).optional(),
  metrics: z.array(MetricSchema).min(1, 'must list at least one metric'),
});
export type AnalysisTemplateInput = z.infer<typeof AnalysisTemplateSchema>;

export type MetricSource =
  | {
      readonly kind: 'query';
      readonly provider: ProviderKind;
      readonly query: string;
      readonly baselineQuery?: string;
      readonly samplesQuery?: string;
      readonly timeoutMs: number;
    }
  | {
      readonly kind: 'relative';
      readonly metric: RelativeMetricName;
      readonly comparator: Comparator;
      readonly tolerance: number;
      readonly toleranceMode: ToleranceMode;
      readonly confidence: number;
      readonly windowMs: number;
    };

/** A metric after defaults, template arguments and condition parsing; JSON-serializable. */
export interface AnalysisMetric {
  readonly name: string;
  /** Undefined when count is 1. */
  readonly intervalMs?: number;
  readonly initialDelayMs: number;
  readonly count: number;
  readonly failureLimit: number;
  readonly inconclusiveLimit: number;
  readonly consecutiveErrorLimit: number;
  readonly consecutiveSuccessLimit: number;
  readonly minSamples: number;
  readonly successCondition?: ParsedCondition;
  readonly failureCondition?: ParsedCondition;
  readonly source: MetricSource;
  /** Arguments fixed by the template and the step; run-time arguments (cohort…) are added per measurement. */
  readonly args: Readonly<Record<string, string>>;
}

export const METRIC_DEFAULTS = {
  count: 1,
  failureLimit: 0,
  inconclusiveLimit: 0,
  consecutiveErrorLimit: 4,
  consecutiveSuccessLimit: 0,
  minSamples: 1,
  queryTimeoutMs: 10_000,
  relativeWindowMs: 5 * 60_000,
} as const;
