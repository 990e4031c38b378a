import type { ProviderKind } from '../analysis/metric-definition.ts';
import type { MetricProvider } from './metric-provider.ts';

/**
 * Picks the provider a metric runs on. `builtin` always exists; `prometheus` exists when the
 * server has `--prometheus-url`. Without it, metrics written for `prometheus` run on the builtin
 * provider (the same PromQL over the server's own series), and the measurement records that.
 * Relative checks use the default: prometheus when configured, else builtin.
 */
export class MetricProviderResolver {
  readonly #builtin: MetricProvider;
  readonly #prometheus: MetricProvider | undefined;

  constructor(providers: { builtin: MetricProvider; prometheus?: MetricProvider }) {
    this.#builtin = providers.builtin;
    this.#prometheus = providers.prometheus;
  }

  resolve(kind: ProviderKind | 'default'): MetricProvider {
    if (kind === 'builtin') return this.#builtin;
    return this.#prometheus ?? this.#builtin;
  }
}
