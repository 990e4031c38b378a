import { errorMessage } from '../../shared/util/errors.ts';
import { builtinQueryProblem } from '../metricproviders/builtin/builtin-query-check.ts';
import { MetricProviderError, type MetricProvider } from '../metricproviders/metric-provider.ts';
import type { MetricProviderResolver } from '../metricproviders/provider-resolver.ts';
import type { RolloutSpec } from '../rollout/rollout-spec.ts';
import { renderQuery } from './query-template.ts';
import { measurementProvider } from './take-measurement.ts';

/** How long the start waits for each answer of the metric provider. */
const PREFLIGHT_TIMEOUT_MS = 5_000;

export interface QueryPreflight {
  /** Queries the provider they run on refuses whatever the data: the start is refused (400). */
  readonly problems: string[];
  /** What the start goes on despite (a provider that does not answer now, a metric that runs on another provider than it names). */
  readonly warnings: string[];
}

/**
 * Before a rollout starts, its analysis queries meet the provider they will run on, so a mistake
 * that would fail every measurement (and the rollout, marking a good version failed) is a refused
 * start instead:
 * - a metric naming `prometheus` on a server without --prometheus-url runs on the builtin
 *   provider (a warning says so), and its queries are checked as the builtin provider's are;
 * - on Prometheus, each query is sent once (arguments in place, the cohort matching any device):
 *   one it refuses as bad_data (a parse or type error), or answers with a range vector or a
 *   string (no condition reads them), is a problem; a Prometheus that does not
 *   answer at all is one warning, and the start goes on (it may answer by the first measurement).
 */
export async function preflightQueries(spec: RolloutSpec, providers: MetricProviderResolver, options: { prometheusConfigured: boolean; fleet?: string; timeoutMs?: number }): Promise<QueryPreflight> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const timeoutMs = options.timeoutMs ?? PREFLIGHT_TIMEOUT_MS;
  let reachable: Promise<string | null> | undefined;
  const unreachable = (provider: MetricProvider) =>
    (reachable ??= provider.query('vector(1)', { now: new Date(), timeoutMs }).then(
      () => null,
      (error: unknown) => errorMessage(error),
    ));
  for (const [index, step] of spec.steps.entries()) {
    if (step.kind !== 'analysis') continue;
    for (const metric of step.metrics) {
      const path = `steps[${index}].analysis metric "${metric.name}"`;
      const provider = measurementProvider(metric, providers);
      if (provider.name === 'prometheus') {
        const failure = await unreachable(provider);
        if (failure !== null) continue;
      }
      if (metric.source.kind !== 'query') continue;
      if (metric.source.provider === 'prometheus' && !options.prometheusConfigured) {
        warnings.push(`${path} names the prometheus provider, and this server has no --prometheus-url: it runs on the builtin provider, over the server's own series`);
      }
      const args = { fleet: options.fleet ?? '', rollout: 'preflight', model: spec.model, candidateVersion: spec.candidateVersion, cohort: '.+', cohortSize: '1', step: String(index), ...metric.args };
      for (const field of ['query', 'baselineQuery', 'samplesQuery'] as const) {
        const text = metric.source[field];
        if (text === undefined) continue;
        const rendered = renderQuery(text, args);
        if (provider.name !== 'prometheus') {
          const problem = builtinQueryProblem(rendered);
          if (problem !== null) problems.push(`${path}: ${field}: the builtin provider cannot run it: ${problem}`);
          continue;
        }
        try {
          // The metric's own timeout when shorter: the check asks no more patience than the measurements will have.
          await provider.query(rendered, { now: new Date(), timeoutMs: Math.min(timeoutMs, metric.source.timeoutMs) });
        } catch (error) {
          const message = errorMessage(error);
          // Prometheus's own verdict on the query (a parse or type error), or an answer no condition
          // can read whatever the data (a range vector, a string); anything else (a timeout, an outage) may pass.
          if (/^prometheus: bad_data: /.test(message)) problems.push(`${path}: ${field}: Prometheus refuses it: ${message.slice('prometheus: bad_data: '.length)}`);
          else if (error instanceof MetricProviderError && error.queryFault) problems.push(`${path}: ${field}: ${message.slice(`${error.provider}: `.length)}`);
        }
      }
    }
  }
  const failure = reachable ? await reachable : null;
  if (failure !== null) {
    warnings.push(`the metric provider did not answer a check before the start (${failure}): the analysis measurements on it fail until it does, and too many failures in a row fail the rollout`);
  }
  return { problems, warnings };
}
