/** The deepest nesting of objects and arrays accepted from untrusted input (request bodies, rollout specs). */
export const MAX_NESTING_DEPTH = 64;

export interface DataProblem {
  /** Where, relative to the value: `labels.__proto__`, `steps[2]`; '' for the value itself. */
  readonly path: string;
  readonly message: string;
}

/**
 * The first problem of a value parsed from untrusted JSON or YAML, or null when there is none:
 * - objects and arrays nested deeper than `maxDepth` (recursive code downstream, such as schema
 *   validation or JSON.stringify, would overflow the stack);
 * - an own `__proto__` key (JSON.parse and yaml create one; schema validation would drop it
 *   without a word, so `{"labels": {"__proto__": "x"}}` would be stored as `{}`).
 * The walk is iterative, so a value of any depth is safe to inspect.
 */
export function untrustedDataProblem(value: unknown, maxDepth = MAX_NESTING_DEPTH): DataProblem | null {
  const pending: { value: unknown; path: string; depth: number }[] = [{ value, path: '', depth: 1 }];
  while (pending.length > 0) {
    const { value: current, path, depth } = pending.pop()!;
    if (current === null || typeof current !== 'object') continue;
    if (depth > maxDepth) return { path: '', message: `nested deeper than ${maxDepth} levels` };
    if (Array.isArray(current)) {
      current.forEach((item, index) => pending.push({ value: item, path: `${path}[${index}]`, depth: depth + 1 }));
      continue;
    }
    for (const key of Object.keys(current)) {
      const at = path === '' ? key : `${path}.${key}`;
      if (key === '__proto__') return { path: at, message: '"__proto__" is not allowed as a key' };
      pending.push({ value: (current as Record<string, unknown>)[key], path: at, depth: depth + 1 });
    }
  }
  return null;
}

/** `problem` as one line under `root`: `body.labels.__proto__: "__proto__" is not allowed as a key`. */
export function describeDataProblem(problem: DataProblem, root: string): string {
  const where = problem.path === '' ? root : `${root}${problem.path.startsWith('[') ? '' : '.'}${problem.path}`;
  return `${where}: ${problem.message}`;
}
