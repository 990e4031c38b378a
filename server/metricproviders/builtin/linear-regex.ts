import { RE2JS, RE2JSSyntaxException } from 're2js';

/**
 * Regex matchers come from rollout specs (an operator's text) and run synchronously, on the
 * server's event loop, against the label values of every series. V8's (backtracking) engine
 * takes exponential time on patterns like `(a|aa)*b` or `(.|.){24}Q`: one query could freeze
 * HTTP, MQTT and the leader's lock for minutes, and no query timeout can interrupt it. Prometheus
 * matches with Go's RE2, in linear time; so do we, with re2js (a JavaScript port of RE2 through
 * RE2/J), which reads RE2's syntax and matches as RE2 does: no backreferences, no lookarounds,
 * counted repetitions up to 1000.
 */

/** Thrown for a pattern that is not a regular expression in RE2's syntax. */
export class RegexPatternError extends Error {}

/** A compiled PromQL regex matcher: whether a label value matches the whole pattern. */
export interface AnchoredRegex {
  matches(value: string): boolean;
}

/**
 * `pattern` read as Prometheus reads a matcher's regex: RE2 (Perl) syntax with `.` matching a
 * newline too (Go's syntax.Perl|syntax.DotNL; RE2JS.DOTALL is a leading `(?s)`, which the pattern
 * may turn off with `(?-s)`), fully anchored, matched in linear time. A pattern RE2 refuses
 * throws a RegexPatternError with re2js's message, e.g. "error parsing regexp: missing closing ):
 * `(a`".
 */
export function compileAnchored(pattern: string): AnchoredRegex {
  // A rollout's cohort, `d1|d2|…` with metacharacters escaped (promqlAlternation), names up to
  // every device of the fleet: as a set it costs nothing to build or ask, where re2js takes a
  // second to compile ten thousand alternatives. Fully anchored, it matches exactly these values.
  const literals = literalAlternatives(pattern);
  if (literals) return { matches: (value) => literals.has(value) };
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern, RE2JS.DOTALL);
  } catch (error) {
    throw new RegexPatternError(syntaxMessage(pattern, error));
  }
  return { matches: (value) => re.matches(value) };
}

/**
 * The values `pattern` matches when it is nothing but literal alternatives (`a|b\.c|`): RE2
 * reads a backslash before an ASCII character that is not a letter or digit as that character;
 * anything else (a class, a group, a repetition, `\d`) is null, for re2js to compile.
 */
export function literalAlternatives(pattern: string): Set<string> | null {
  const values = new Set<string>();
  let current = '';
  for (let i = 0; i < pattern.length; i += 1) {
    const char = pattern[i]!;
    if (char === '\\') {
      const next = pattern[i + 1];
      if (next === undefined || next.charCodeAt(0) > 0x7f || /[A-Za-z0-9]/.test(next)) return null;
      current += next;
      i += 1;
    } else if (char === '|') {
      values.add(current);
      current = '';
    } else if ('.+*?()[]{}^$'.includes(char)) {
      return null;
    } else {
      current += char;
    }
  }
  values.add(current);
  return values;
}

/** re2js's message for `pattern`, shown as the operator wrote it (without the `(?s)` DOTALL adds). */
function syntaxMessage(pattern: string, error: unknown): string {
  if (!(error instanceof RE2JSSyntaxException)) return error instanceof Error ? error.message : String(error);
  // Whether `.` matches a newline changes nothing in what parses: compiled without the flag, the
  // pattern fails the same way, and the message quotes it alone where it quotes the whole pattern.
  try {
    RE2JS.compile(pattern);
  } catch (plain) {
    if (plain instanceof RE2JSSyntaxException) return oneLine(plain.message);
  }
  return oneLine(error.message);
}

/** Line breaks in a quoted pattern shown escaped, so the message stays one line. */
function oneLine(message: string): string {
  return message.replace(/[\r\n\u2028\u2029]/g, (char) => (char === '\n' ? '\\n' : char === '\r' ? '\\r' : `\\u${char.charCodeAt(0).toString(16)}`));
}
