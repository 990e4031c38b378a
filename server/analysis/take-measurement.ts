import { errorMessage } from '../../shared/util/errors.ts';
import type { MetricProviderResolver } from '../metricproviders/provider-resolver.ts';
import type { MetricProvider, Sample } from '../metricproviders/metric-provider.ts';
import { judgeConditions } from './condition-verdict.ts';
import { METRIC_DEFAULTS, type AnalysisMetric } from './metric-definition.ts';
import type { Measurement } from './measurement.ts';
import { renderQuery } from './query-template.ts';
import { judgeRelative, relativeQueries, relativeScale } from './relative-check.ts';

/**
 * Takes one measurement of a metric: renders its queries with the arguments, runs them on the
 * resolved provider, and judges the values. Never throws for a provider failure: that is an
 * Error measurement carrying the message.
 */
export interface MeasurementContext {
  /** Arguments for `{{args.NAME}}` and the conditions: the metric's own plus the rollout's. */
  readonly args: Readonly<Record<string, string>>;
  readonly model: string;
  readonly candidateVersion: string;
  /** Devices currently carrying the candidate (for relative checks). */
  readonly devices: readonly string[];
  /** The versions those devices ran when the rollout started (the relative checks' baselines). */
  readonly baselineVersions?: readonly string[];
  /** When the rollout started: relative checks do not look back past it (reports of an earlier rollout of the same version). */
  readonly notBefore?: Date;
  /** This server's fleet label (DEVICE_REPORT_LABELS), for the relative checks' queries. */
  readonly fleet?: string;
  readonly now: () => Date;
  readonly signal?: AbortSignal;
}

export async function takeMeasurement(metric: AnalysisMetric, index: number, providers: MetricProviderResolver, context: MeasurementContext): Promise<Measurement> {
  const startedAt = context.now();
  const source = metric.source;
  const provider = measurementProvider(metric, providers);
  // The rollout's own arguments (cohort, candidateVersion, ...) always win over a metric's.
  const args = { ...metric.args, ...context.args };
  const base = { metric: metric.name, index, startedAt: startedAt.toISOString(), provider: provider.name };
  const finish = () => context.now().toISOString();

  if (source.kind === 'relative') {
    const queries = relativeQueries(source, {
      model: context.model,
      candidateVersion: context.candidateVersion,
      devices: context.devices,
      ...(context.baselineVersions ? { baselineVersions: context.baselineVersions } : {}),
      ...(context.notBefore ? { notBefore: context.notBefore, at: startedAt } : {}),
      ...(context.fleet === undefined ? {} : { fleet: context.fleet }),
    });
    const thresholds = { minSamples: metric.minSamples };
    if (context.devices.length === 0) {
      return { ...base, phase: 'Inconclusive', finishedAt: finish(), queries, value: [], thresholds, message: 'too few samples: no device carries the candidate' };
    }
    const notes = newNotes();
    try {
      const scale = relativeScale(source.metric);
      const [candidate, baseline] = await Promise.all([
        // The window is in the queries (avg_over_time); the timeout is the default query timeout, as for any query.
        run(provider, queries.candidate, startedAt, context, METRIC_DEFAULTS.queryTimeoutMs, notes),
        run(provider, queries.baseline, startedAt, context, METRIC_DEFAULTS.queryTimeoutMs, notes),
      ]);
      // Only the rollout's devices count: a backend answering for others (ignoring the query's
      // device matcher) must not make up the samples minSamples asks for.
      const rolloutDevices = new Set(context.devices);
      const byDevice = (samples: readonly Sample[]) => new Map(samples.filter((s) => s.labels.device !== undefined && rolloutDevices.has(s.labels.device)).map((s) => [s.labels.device!, s.value * scale]));
      const candidateByDevice = byDevice(candidate);
      const baselineByDevice = byDevice(baseline);
      const judged = judgeRelative(source, candidateByDevice, baselineByDevice, metric.minSamples, context.devices);
      // Not one value on either side from Prometheus: the devices may not have reported yet, or
      // Prometheus does not scrape this server (a scrape config for another target or port).
      const judgement =
        provider.name === 'prometheus' && candidateByDevice.size === 0 && baselineByDevice.size === 0
          ? { ...judged, message: `${judged.message}; Prometheus has no such series for any of the rollout's devices: if this lasts, check that it scrapes this server's /metrics (up{job="fleetprune"} in Prometheus)` }
          : judged;
      const evidence = judgement.evidence;
      // The samples compared with minSamples: devices with both a candidate and a baseline value.
      const paired = [...candidateByDevice.keys()].filter((device) => baselineByDevice.has(device)).length;
      return {
        ...base,
        ...annotated(judgement.phase, `${metric.name}: ${judgement.message}`, notes),
        finishedAt: finish(),
        queries,
        value: evidence ? evidence.candidate.map((entry) => entry.value) : candidate.map((s) => s.value * scale),
        baseline: evidence ? evidence.baseline.map((entry) => entry.value) : baseline.map((s) => s.value * scale),
        samples: evidence ? evidence.candidate.length : paired,
        thresholds: evidence ? { ...thresholds, success: evidence.bound } : thresholds,
        ...(evidence ? { relative: evidence } : {}),
      };
    } catch (error) {
      return { ...base, phase: 'Error', finishedAt: finish(), queries, value: null, thresholds, message: `${metric.name}: ${errorMessage(error)}` };
    }
  }

  const queries: Record<string, string> = { query: renderQuery(source.query, args) };
  if (source.baselineQuery) queries.baselineQuery = renderQuery(source.baselineQuery, args);
  if (source.samplesQuery) queries.samplesQuery = renderQuery(source.samplesQuery, args);
  const notes = newNotes();
  try {
    const result = await run(provider, queries.query!, startedAt, context, source.timeoutMs, notes, args);
    const values = result.map((s) => s.value);
    const baseline = queries.baselineQuery ? (await run(provider, queries.baselineQuery, startedAt, context, source.timeoutMs, notes, args)).map((s) => s.value) : undefined;
    let samples = values.length;
    if (queries.samplesQuery) {
      const counted = await run(provider, queries.samplesQuery, startedAt, context, source.timeoutMs, notes, args);
      samples = counted.length === 0 ? 0 : counted.reduce((total, s) => total + s.value, 0);
    }
    const verdict = judgeConditions(metric, { values, ...(baseline ? { baseline } : {}), samples, args, first: index === 0 });
    return {
      ...base,
      ...annotated(verdict.phase, `${metric.name}: ${verdict.message}`, notes),
      finishedAt: finish(),
      queries,
      value: values,
      ...(baseline ? { baseline } : {}),
      samples,
      thresholds: verdict.thresholds,
    };
  } catch (error) {
    return {
      ...base,
      phase: 'Error',
      finishedAt: finish(),
      queries,
      value: null,
      thresholds: judgeConditions(metric, { values: [], samples: 0, args }).thresholds,
      message: `${metric.name}: ${errorMessage(error)}`,
    };
  }
}

/** The provider a metric's measurements run on: its own (`prometheus` falls back to builtin without one), the default for a relative check. */
export function measurementProvider(metric: AnalysisMetric, providers: MetricProviderResolver): MetricProvider {
  return providers.resolve(metric.source.kind === 'query' ? metric.source.provider : 'default');
}

/** The warnings and infos of a measurement's answers (a Prometheus partial response), each once. */
interface QueryNotes {
  readonly warnings: Set<string>;
  readonly infos: Set<string>;
}

function newNotes(): QueryNotes {
  return { warnings: new Set(), infos: new Set() };
}

/**
 * The verdict with the answers' warnings and infos shown in its message. An answer with warnings
 * may be partial (a Thanos/Mimir store unavailable: devices' series missing, or a candidate's
 * errors undercounted), so a Successful verdict on it is Inconclusive: a rollout is never promoted
 * on partial data. Failed stays Failed (what was seen already fails it), and Inconclusive stays.
 */
function annotated(phase: Measurement['phase'], message: string, notes: QueryNotes): Pick<Measurement, 'phase' | 'message'> {
  const warnings = [...notes.warnings];
  const infos = [...notes.infos];
  let text = message;
  if (warnings.length > 0) text += `; the metric provider warned: ${warnings.map((w) => `"${w}"`).join(', ')}${phase === 'Successful' ? ' (a partial answer: Inconclusive, not Successful)' : ''}`;
  if (infos.length > 0) text += `; the metric provider noted: ${infos.map((info) => `"${info}"`).join(', ')}`;
  return { phase: phase === 'Successful' && warnings.length > 0 ? 'Inconclusive' : phase, message: text };
}

async function run(provider: MetricProvider, query: string, now: Date, context: MeasurementContext, timeoutMs: number, notes: QueryNotes, args?: Readonly<Record<string, string>>): Promise<readonly Sample[]> {
  const result = await provider.query(query, { now, timeoutMs, ...(args ? { args } : {}), ...(context.signal ? { signal: context.signal } : {}) });
  for (const warning of result.warnings ?? []) notes.warnings.add(warning);
  for (const info of result.infos ?? []) notes.infos.add(info);
  return result.samples;
}
