import { evaluatePromql } from './promql-evaluator.ts';
import { parsePromql, PromqlError } from './promql-parser.ts';
import { InMemorySeriesSet } from './series-set.ts';

/**
 * Why the builtin provider cannot run `query` (arguments in place), else null: a syntax error, an
 * unsupported construct, or what only evaluation finds whatever the data (a range selector
 * outside a range function): the query is evaluated over no series.
 */
export function builtinQueryProblem(query: string): string | null {
  try {
    evaluatePromql(parsePromql(query), new InMemorySeriesSet([]), Date.now());
    return null;
  } catch (error) {
    // Thousands of nested parentheses or signs overflow the parser's recursion: the query's fault, not the server's.
    if (error instanceof RangeError) return 'the query is nested too deeply to parse';
    if (error instanceof PromqlError) return error.message;
    throw error;
  }
}
