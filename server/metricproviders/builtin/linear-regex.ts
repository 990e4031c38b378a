import v8 from 'node:v8';

/**
 * Regex matchers come from rollout specs (an operator's text) and run synchronously, on the
 * server's event loop, against the label values of every series. V8's default (backtracking)
 * engine takes exponential time on patterns like `(a|aa)*b` or `(.|.){24}Q`: one query could
 * freeze HTTP, MQTT and the leader's lock for minutes, and no query timeout can interrupt it.
 * Prometheus uses RE2, which runs in linear time. V8 has such an engine too — the `l` flag,
 * behind --enable-experimental-regexp-engine — with RE2's limits: no backreferences, no
 * lookarounds, no large counted repetitions. The flag only makes `l` available; regexes
 * without it are unchanged.
 */
v8.setFlagsFromString('--enable-experimental-regexp-engine');

/** Whether this V8 accepts the linear-time flag (it does on Node 20; a test says so). */
export const LINEAR_REGEX_ENGINE: boolean = (() => {
  try {
    new RegExp('a', 'l');
    return true;
  } catch {
    return false;
  }
})();

/** Thrown for a pattern that is not a regular expression, or one that cannot run in linear time. */
export class RegexPatternError extends Error {}

/**
 * Whether the backtracking engine is safe for `pattern`: alternations of literals, classes and
 * dots with no quantifier anywhere and at most one group, not nested (`(d1|d2):9100`). Anchored,
 * the engine then tries each way through the pattern once — each top-level branch, and within
 * the one holding the group each of its branches — so time stays linear in the pattern's length.
 * (Two groups multiply: `(a|a)(a|a)…` has 2^k ways.) The rollout's cohort (`d1|d2|…`, every id of
 * the cohort, often inside a group) is one; for it the linear engine, an interpreter, is some 50
 * times slower at 1,000 devices and some 250 times at 10,000.
 */
export function isBacktrackingSafe(pattern: string): boolean {
  let groups = 0;
  let open = false;
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!;
    if (char === '\\') {
      if (/[1-9k]/.test(pattern[i + 1] ?? '')) return false; // a backreference: refused, as by RE2
      i++;
    } else if (char === '[') {
      // A class: to its first unescaped closing bracket (JavaScript's rule: `[]` is an empty class).
      let j = pattern[i + 1] === '^' ? i + 2 : i + 1;
      while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      if (j >= pattern.length) return false;
      i = j;
    } else if (char === '(') {
      if (open || groups === 1) return false;
      if (pattern[i + 1] === '?') {
        if (pattern[i + 2] !== ':') return false; // a lookaround or a named group
        i += 2;
      }
      open = true;
      groups++;
    } else if (char === ')') {
      if (!open) return false;
      open = false;
    } else if ('*+?{'.includes(char)) return false;
  }
  return !open;
}

/** `pattern` fully anchored, as PromQL matchers are, compiled to run in linear time. */
export function compileAnchored(pattern: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, LINEAR_REGEX_ENGINE && !isBacktrackingSafe(pattern) ? 'l' : '');
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new RegexPatternError(
      /linear time/.test(message)
        ? 'backreferences, lookarounds and large counted repetitions are not supported: matching must take linear time'
        : message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, ''),
    );
  }
}
