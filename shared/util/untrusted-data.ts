/** The deepest nesting of objects and arrays accepted from untrusted input (request bodies, rollout specs). */
export const MAX_NESTING_DEPTH = 64;

const NUL_MESSAGE = 'contains a NUL character (U+0000)';
const SURROGATE_MESSAGE = 'contains an unpaired surrogate (\\ud800 to \\udfff): not well-formed Unicode';

/** What is wrong with a string or key as text, or null. */
function textProblem(text: string): string | null {
  if (text.includes('\0')) return NUL_MESSAGE;
  // A UTF-16 surrogate without its other half has no UTF-8, so a store writes U+FFFD instead.
  if (!text.isWellFormed()) return SURROGATE_MESSAGE;
  return null;
}

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
 *   without a word, so `{"labels": {"__proto__": "x"}}` would be stored as `{}`);
 * - a NUL character (U+0000) in a string or a key: no name, label or reason has one, C-string
 *   tools truncate at it, and PostgreSQL refuses to store it in text;
 * - an unpaired surrogate in a string or a key (JSON's "\ud800"): it has no UTF-8, so SQLite and
 *   PostgreSQL would store U+FFFD in its place, not what was sent.
 * The walk is iterative, so a value of any depth is safe to inspect. Binary data (Buffers and
 * other typed arrays) is not inspected.
 */
export function untrustedDataProblem(value: unknown, maxDepth = MAX_NESTING_DEPTH): DataProblem | null {
  const pending: { value: unknown; path: string; depth: number }[] = [{ value, path: '', depth: 1 }];
  while (pending.length > 0) {
    const { value: current, path, depth } = pending.pop()!;
    if (typeof current === 'string') {
      const problem = textProblem(current);
      if (problem) return { path, message: problem };
    }
    if (current === null || typeof current !== 'object' || ArrayBuffer.isView(current)) continue;
    if (depth > maxDepth) return { path: '', message: `nested deeper than ${maxDepth} levels` };
    if (Array.isArray(current)) {
      current.forEach((item, index) => pending.push({ value: item, path: `${path}[${index}]`, depth: depth + 1 }));
      continue;
    }
    for (const key of Object.keys(current)) {
      const at = path === '' ? key : `${path}.${key}`;
      if (key === '__proto__') return { path: at, message: '"__proto__" is not allowed as a key' };
      const keyProblem = textProblem(key);
      if (keyProblem) return { path: at, message: `key ${keyProblem}` };
      pending.push({ value: (current as Record<string, unknown>)[key], path: at, depth: depth + 1 });
    }
  }
  return null;
}

/**
 * `problem` as one line under `root`: `body.labels.__proto__: "__proto__" is not allowed as a key`;
 * with root '', `labels.__proto__: ...`.
 */
export function describeDataProblem(problem: DataProblem, root: string): string {
  const separator = root === '' || problem.path.startsWith('[') ? '' : '.';
  const where = problem.path === '' ? root : `${root}${separator}${problem.path}`;
  return where === '' ? problem.message : `${where}: ${problem.message}`;
}
