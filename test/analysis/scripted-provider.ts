import { MetricProviderError, type MetricProvider, type QueryContext, type QueryResult } from '../../server/metricproviders/metric-provider.ts';

export type Scripted = number[] | 'error' | ((query: string, context: QueryContext) => QueryResult | Promise<QueryResult>);

/** A provider that answers each query from a script, in order; the last answer repeats. */
export class ScriptedProvider implements MetricProvider {
  readonly name: string;
  readonly calls: { query: string; at: number }[] = [];
  readonly #script: Scripted[];

  constructor(script: Scripted[], name = 'scripted') {
    this.#script = script;
    this.name = name;
  }

  async query(query: string, context: QueryContext): Promise<QueryResult> {
    this.calls.push({ query, at: context.now.getTime() });
    const answer = this.#script.length > 1 ? this.#script.shift()! : this.#script[0]!;
    if (answer === 'error') throw new MetricProviderError(this.name, 'connection refused');
    if (typeof answer === 'function') return answer(query, context);
    return { resultType: 'vector', samples: answer.map((value, i) => ({ labels: { i: String(i) }, value })) };
  }
}
