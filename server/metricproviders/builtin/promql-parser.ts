import { compileAnchored, type AnchoredRegex } from './linear-regex.ts';

/**
 * A parser for the PromQL subset the builtin provider evaluates (see docs/rollout-spec.md):
 *
 * - number literals; vector selectors `name{label="v", label!="v", label=~"re", label!~"re"}`
 *   (the name may be omitted when a matcher is given); range selectors `selector[5m]` as the
 *   argument of a range function;
 * - aggregations sum, avg, min, max, count, with `by (…)` or `without (…)` before or after
 *   the argument;
 * - functions rate, increase, avg_over_time, min_over_time, max_over_time, sum_over_time,
 *   count_over_time, last_over_time, histogram_quantile, abs, scalar, vector;
 * - binary `+ - * / %` and comparisons `== != > < >= <=` (with `bool`), between scalars,
 *   vector and scalar, or two vectors matched one-to-one (optionally `on (…)` / `ignoring (…)`);
 * - the set operator `and` between two vectors (optionally `on (…)` / `ignoring (…)`): the left
 *   samples that have a match on the right, as they are (the relative checks keep to devices
 *   whose report is recent enough with it);
 * - unary minus and parentheses.
 *
 * Anything else (offset, @, subqueries, or/unless, group_left/right, topk…) is a clear
 * parse error naming the construct.
 */
export type MatchOperator = '=' | '!=' | '=~' | '!~';
export interface LabelMatcher {
  readonly label: string;
  readonly operator: MatchOperator;
  readonly value: string;
}

export const AGGREGATIONS = ['sum', 'avg', 'min', 'max', 'count'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];
export const RANGE_FUNCTIONS = ['rate', 'increase', 'avg_over_time', 'min_over_time', 'max_over_time', 'sum_over_time', 'count_over_time', 'last_over_time'] as const;
export type RangeFunction = (typeof RANGE_FUNCTIONS)[number];
export const INSTANT_FUNCTIONS = ['histogram_quantile', 'abs', 'scalar', 'vector'] as const;
export type InstantFunction = (typeof INSTANT_FUNCTIONS)[number];
export type ArithmeticOperator = '+' | '-' | '*' | '/' | '%';
export type ComparisonOperator = '==' | '!=' | '>' | '<' | '>=' | '<=';
export type SetOperator = 'and';

export type PromExpr =
  | { readonly type: 'number'; readonly value: number }
  | { readonly type: 'selector'; readonly matchers: readonly LabelMatcher[]; readonly rangeMs?: number; readonly text: string }
  | { readonly type: 'aggregate'; readonly op: Aggregation; readonly grouping?: { readonly mode: 'by' | 'without'; readonly labels: readonly string[] }; readonly expr: PromExpr }
  | { readonly type: 'range-call'; readonly fn: RangeFunction; readonly selector: Extract<PromExpr, { type: 'selector' }> }
  | { readonly type: 'call'; readonly fn: InstantFunction; readonly args: readonly PromExpr[] }
  | {
      readonly type: 'binary';
      readonly op: ArithmeticOperator | ComparisonOperator | SetOperator;
      readonly bool: boolean;
      readonly matching?: { readonly mode: 'on' | 'ignoring'; readonly labels: readonly string[] };
      readonly left: PromExpr;
      readonly right: PromExpr;
    }
  | { readonly type: 'negate'; readonly expr: PromExpr };

export class PromqlError extends Error {
  constructor(message: string, position?: number) {
    super(position === undefined ? message : `${message} (at character ${position + 1})`);
    this.name = 'PromqlError';
  }
}

interface Token {
  kind: 'identifier' | 'number' | 'string' | 'duration' | 'op' | 'end';
  text: string;
  position: number;
}

const OPS = ['=~', '!~', '!=', '==', '<=', '>=', '(', ')', '{', '}', '[', ']', ',', '=', '<', '>', '+', '-', '*', '/', '%', '^', '@', ':'];
const UNSUPPORTED_WORDS = new Set(['offset', 'or', 'unless', 'group_left', 'group_right', 'topk', 'bottomk', 'quantile', 'stddev', 'stdvar', 'count_values', 'group']);

function lex(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let bracketDepth = 0;
  while (i < source.length) {
    const ch = source[i]!;
    if (/\s/.test(ch)) {
      i += 1;
      continue;
    }
    if (ch === '#') {
      while (i < source.length && source[i] !== '\n') i += 1;
      continue;
    }
    if (bracketDepth > 0) {
      const duration = /^[0-9][0-9A-Za-z.]*/.exec(source.slice(i));
      if (duration) {
        tokens.push({ kind: 'duration', text: duration[0], position: i });
        i += duration[0].length;
        continue;
      }
      // A subquery's `[range:step]`, not a metric name (those may contain colons).
      if (ch === ':') {
        tokens.push({ kind: 'op', text: ':', position: i });
        i += 1;
        continue;
      }
    }
    const number = /^(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)/.exec(source.slice(i));
    if (number) {
      tokens.push({ kind: 'number', text: number[0], position: i });
      i += number[0].length;
      continue;
    }
    const identifier = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(source.slice(i));
    if (identifier) {
      const word = identifier[0];
      tokens.push({ kind: word === 'Inf' || word === 'NaN' ? 'number' : 'identifier', text: word, position: i });
      i += identifier[0].length;
      continue;
    }
    if (ch === '"' || ch === "'" || ch === '`') {
      let j = i + 1;
      // Bytes, as Go's strings are: \x and octal escapes give a byte each (UTF-8 decoded at the end).
      const bytes: number[] = [];
      let plain = j;
      let escaped = false;
      while (j < source.length && source[j] !== ch) {
        if (source[j] === '\\' && ch !== '`') {
          appendBytes(bytes, UTF8.encode(source.slice(plain, j)));
          j = escape(source, j, ch, bytes);
          plain = j;
          escaped = true;
          continue;
        }
        j += 1;
      }
      if (j >= source.length) throw new PromqlError('unterminated string', i);
      if (escaped) appendBytes(bytes, UTF8.encode(source.slice(plain, j)));
      tokens.push({ kind: 'string', text: escaped ? UTF8_DECODER.decode(new Uint8Array(bytes)) : source.slice(i + 1, j), position: i });
      i = j + 1;
      continue;
    }
    const op = OPS.find((candidate) => source.startsWith(candidate, i));
    if (op) {
      if (op === '[') bracketDepth += 1;
      if (op === ']') bracketDepth = Math.max(0, bracketDepth - 1);
      tokens.push({ kind: 'op', text: op, position: i });
      i += op.length;
      continue;
    }
    throw new PromqlError(`unexpected character "${ch}"`, i);
  }
  tokens.push({ kind: 'end', text: '', position: source.length });
  return tokens;
}

const UTF8 = new TextEncoder();
const UTF8_DECODER = new TextDecoder('utf-8');
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

function appendBytes(bytes: number[], more: Uint8Array): void {
  for (const byte of more) bytes.push(byte);
}

/** Go's %#U: `U+0064 'd'`. */
function describeRune(rune: string): string {
  const codePoint = rune.codePointAt(0)!;
  const hex = codePoint.toString(16).toUpperCase().padStart(4, '0');
  return codePoint >= 0x20 && codePoint !== 0x7f ? `U+${hex} '${rune}'` : `U+${hex}`;
}

/**
 * One escape sequence of a quoted string, at `at` (its backslash), appended to `bytes`; returns
 * where the string goes on. The escapes of Prometheus's lexer (Go's): \a \b \f \n \r \t \v \\,
 * the string's own quote, \NNN (octal, at most \377), \xNN, \uNNNN and \UNNNNNNNN (no surrogates).
 * Anything else is "unknown escape sequence", as Prometheus answers: `"edge-\d"` is not the regex
 * `edge-\d` (that is `"edge-\\d"` or `` `edge-\d` ``), and taking it as `edge-d` would match other devices.
 */
function escape(source: string, at: number, quote: string, bytes: number[]): number {
  const next = source[at + 1];
  if (next === undefined) throw new PromqlError('escape sequence not terminated', at);
  const simple = SIMPLE_ESCAPES[next] ?? (next === quote ? quote : undefined);
  if (simple !== undefined) {
    appendBytes(bytes, UTF8.encode(simple));
    return at + 2;
  }
  let digits: number;
  let base: number;
  let max: number;
  let start = at + 1;
  if (next >= '0' && next <= '7') [digits, base, max] = [3, 8, 255];
  else if (next === 'x') [digits, base, max, start] = [2, 16, 255, at + 2];
  else if (next === 'u') [digits, base, max, start] = [4, 16, 0x10ffff, at + 2];
  else if (next === 'U') [digits, base, max, start] = [8, 16, 0x10ffff, at + 2];
  else {
    const rune = String.fromCodePoint(source.codePointAt(at + 1)!);
    throw new PromqlError(`unknown escape sequence \\${rune} (${describeRune(rune)}); a backslash (a regex's) is written \\\\ in a quoted string, or use a \`raw string\``, at);
  }
  let value = 0;
  for (let k = 0; k < digits; k += 1) {
    const digit = source[start + k];
    if (digit === undefined) throw new PromqlError('escape sequence not terminated', at);
    const v = Number.parseInt(digit, 16);
    if (!/^[0-9a-fA-F]$/.test(digit) || v >= base) throw new PromqlError(`illegal character ${describeRune(String.fromCodePoint(source.codePointAt(start + k)!))} in escape sequence`, at);
    value = value * base + v;
  }
  if (value > max || (value >= 0xd800 && value < 0xe000)) throw new PromqlError('escape sequence is an invalid Unicode code point', at);
  if (max === 255) bytes.push(value);
  else appendBytes(bytes, UTF8.encode(String.fromCodePoint(value)));
  return start + digits;
}

export function parsePromql(source: string): PromExpr {
  const parser = new PromqlParser(lex(source), source);
  const expr = parser.expression();
  parser.expectEnd();
  return expr;
}

/** Binary precedence, lowest first (`and` is a word, the others operators); `or` and `^` are not supported. */
const LEVELS: readonly (readonly string[])[] = [['and'], ['==', '!=', '>', '<', '>=', '<='], ['+', '-'], ['*', '/', '%']];
const COMPARISON_LEVEL = 1;

class PromqlParser {
  #tokens: Token[];
  #at = 0;
  #source: string;

  constructor(tokens: Token[], source: string) {
    this.#tokens = tokens;
    this.#source = source;
  }

  expectEnd(): void {
    const token = this.#peek();
    if (token.kind !== 'end') throw new PromqlError(`unexpected ${show(token)}`, token.position);
  }

  expression(level = 0): PromExpr {
    if (level === LEVELS.length) return this.#unary();
    let left = this.expression(level + 1);
    for (;;) {
      const token = this.#peek();
      if (token.kind === 'op' && token.text === '^') throw new PromqlError('the builtin provider does not support "^"', token.position);
      if (token.kind === 'identifier' && UNSUPPORTED_WORDS.has(token.text) && level === 0) {
        throw new PromqlError(`the builtin provider does not support "${token.text}"`, token.position);
      }
      if (token.kind !== (level === 0 ? 'identifier' : 'op') || !LEVELS[level]!.includes(token.text)) return left;
      this.#take();
      const bool = this.#word('bool');
      if (bool && level !== COMPARISON_LEVEL) throw new PromqlError('"bool" only follows a comparison', token.position);
      const matching = this.#matching();
      const right = this.expression(level + 1);
      left = {
        type: 'binary',
        op: token.text as ArithmeticOperator | ComparisonOperator | SetOperator,
        bool,
        ...(matching ? { matching } : {}),
        left,
        right,
      };
    }
  }

  #matching(): { mode: 'on' | 'ignoring'; labels: string[] } | undefined {
    const token = this.#peek();
    if (token.kind !== 'identifier' || (token.text !== 'on' && token.text !== 'ignoring')) return undefined;
    this.#take();
    const labels = this.#labelList();
    const next = this.#peek();
    if (next.kind === 'identifier' && (next.text === 'group_left' || next.text === 'group_right')) {
      throw new PromqlError(`the builtin provider does not support "${next.text}" (only one-to-one matching)`, next.position);
    }
    return { mode: token.text, labels };
  }

  #unary(): PromExpr {
    const token = this.#peek();
    if (token.kind === 'op' && (token.text === '-' || token.text === '+')) {
      this.#take();
      const operand = this.#unary();
      if (token.text === '+') return operand;
      return operand.type === 'number' ? { type: 'number', value: -operand.value } : { type: 'negate', expr: operand };
    }
    return this.#postfix(this.#primary());
  }

  #postfix(expr: PromExpr): PromExpr {
    const token = this.#peek();
    if (token.kind === 'identifier' && token.text === 'offset') throw new PromqlError('the builtin provider does not support "offset"', token.position);
    if (token.kind === 'op' && token.text === '@') throw new PromqlError('the builtin provider does not support "@"', token.position);
    if (token.kind === 'op' && token.text === '[') {
      this.#rejectSubquery();
      if (expr.type !== 'selector' || expr.rangeMs !== undefined) throw new PromqlError('a range [..] must follow a vector selector', token.position);
      this.#take();
      const duration = this.#take();
      const ms = duration.kind === 'duration' ? parsePromDuration(duration.text) : undefined;
      if (ms === undefined || ms <= 0) {
        throw new PromqlError(`bad range duration ${show(duration)} (a duration such as 30s, 5m, 1h30m, 1d or 1w: integers, units ms s m h d w y largest first; more than 0)`, duration.position);
      }
      const close = this.#take();
      if (close.kind !== 'op' || close.text !== ']') throw new PromqlError(`expected "]", found ${show(close)}`, close.position);
      return { ...expr, rangeMs: ms, text: `${expr.text}[${duration.text}]` };
    }
    return expr;
  }

  /** At a `[`: a subquery `[range:step]` (or `[range:]`) is an error that quotes it. */
  #rejectSubquery(): void {
    const open = this.#tokens[this.#at]!;
    const range = this.#tokens[this.#at + 1];
    const colon = this.#tokens[this.#at + 2];
    if (range?.kind !== 'duration' || colon?.kind !== 'op' || colon.text !== ':') return;
    const close = this.#tokens.slice(this.#at + 3).find((token) => token.kind === 'end' || (token.kind === 'op' && token.text === ']'))!;
    const text = this.#source.slice(open.position, close.kind === 'end' ? close.position : close.position + 1);
    throw new PromqlError(`the builtin provider does not support subqueries ("${text}"), only range selectors such as metric[${range.text}]`, open.position);
  }

  #primary(): PromExpr {
    const token = this.#take();
    if (token.kind === 'number') {
      const value = token.text === 'Inf' ? Number.POSITIVE_INFINITY : token.text === 'NaN' ? Number.NaN : Number(token.text);
      return { type: 'number', value };
    }
    if (token.kind === 'op' && token.text === '(') {
      const inner = this.expression();
      this.#expect(')');
      return inner;
    }
    if (token.kind === 'op' && token.text === '{') {
      this.#at -= 1;
      return this.#selector(undefined, token.position);
    }
    if (token.kind === 'identifier') {
      const name = token.text;
      if ((AGGREGATIONS as readonly string[]).includes(name) && this.#isGroupingOrParen()) return this.#aggregate(name as Aggregation);
      if (UNSUPPORTED_WORDS.has(name) && this.#isOp('(')) throw new PromqlError(`the builtin provider does not support "${name}"`, token.position);
      if (this.#isOp('(')) return this.#call(name, token.position);
      return this.#selector(name, token.position);
    }
    if (token.kind === 'string') throw new PromqlError(`the builtin provider does not support string literals (${show(token)})`, token.position);
    throw new PromqlError(`expected an expression, found ${show(token)}`, token.position);
  }

  #isGroupingOrParen(): boolean {
    const next = this.#peek();
    return (next.kind === 'op' && next.text === '(') || (next.kind === 'identifier' && (next.text === 'by' || next.text === 'without'));
  }

  #aggregate(op: Aggregation): PromExpr {
    let grouping = this.#grouping();
    this.#expect('(');
    const expr = this.expression();
    const comma = this.#peek();
    if (comma.kind === 'op' && comma.text === ',') throw new PromqlError(`${op}() takes one argument`, comma.position);
    this.#expect(')');
    const after = this.#grouping();
    if (after && grouping) throw new PromqlError(`${op}: grouping given twice`);
    grouping = grouping ?? after;
    return { type: 'aggregate', op, ...(grouping ? { grouping } : {}), expr };
  }

  #grouping(): { mode: 'by' | 'without'; labels: string[] } | undefined {
    const token = this.#peek();
    if (token.kind !== 'identifier' || (token.text !== 'by' && token.text !== 'without')) return undefined;
    this.#take();
    return { mode: token.text, labels: this.#labelList() };
  }

  #labelList(): string[] {
    this.#expect('(');
    const labels: string[] = [];
    while (!this.#isOp(')')) {
      const label = this.#take();
      if (label.kind !== 'identifier') throw new PromqlError(`expected a label name, found ${show(label)}`, label.position);
      labels.push(label.text);
      if (!this.#isOp(',')) break;
      this.#take();
    }
    this.#expect(')');
    return labels;
  }

  #call(name: string, position: number): PromExpr {
    // Named before its arguments are read: label_replace(v, "dst", …) would otherwise be refused for
    // its string argument ("expected an expression"), not for the function it is.
    if (!(RANGE_FUNCTIONS as readonly string[]).includes(name) && !(INSTANT_FUNCTIONS as readonly string[]).includes(name)) {
      throw new PromqlError(`the builtin provider does not support the function "${name}" (supported: ${[...RANGE_FUNCTIONS, ...INSTANT_FUNCTIONS, ...AGGREGATIONS].join(', ')})`, position);
    }
    this.#expect('(');
    const args: PromExpr[] = [];
    while (!this.#isOp(')')) {
      args.push(this.expression());
      if (!this.#isOp(',')) break;
      this.#take();
    }
    this.#expect(')');
    if ((RANGE_FUNCTIONS as readonly string[]).includes(name)) {
      const [selector] = args;
      if (args.length !== 1 || selector?.type !== 'selector' || selector.rangeMs === undefined) {
        throw new PromqlError(`${name}() takes one range selector, e.g. ${name}(metric[5m])`, position);
      }
      return { type: 'range-call', fn: name as RangeFunction, selector };
    }
    const arity = name === 'histogram_quantile' ? 2 : 1;
    if (args.length !== arity) throw new PromqlError(`${name}() takes ${arity} argument${arity === 1 ? '' : 's'}, got ${args.length}`, position);
    for (const arg of args) {
      if (arg.type === 'selector' && arg.rangeMs !== undefined) throw new PromqlError(`${name}() takes an instant vector, not a range`, position);
    }
    return { type: 'call', fn: name as InstantFunction, args };
  }

  #selector(name: string | undefined, position: number): Extract<PromExpr, { type: 'selector' }> {
    const matchers: LabelMatcher[] = name === undefined ? [] : [{ label: '__name__', operator: '=', value: name }];
    if (this.#isOp('{')) {
      this.#take();
      while (!this.#isOp('}')) {
        const label = this.#take();
        if (label.kind !== 'identifier') throw new PromqlError(`expected a label name, found ${show(label)}`, label.position);
        const op = this.#take();
        if (op.kind !== 'op' || !['=', '!=', '=~', '!~'].includes(op.text)) throw new PromqlError(`expected =, !=, =~ or !~ after "${label.text}", found ${show(op)}`, op.position);
        const value = this.#take();
        if (value.kind !== 'string') throw new PromqlError(`expected a quoted string after ${label.text}${op.text}, found ${show(value)}`, value.position);
        if (op.text === '=~' || op.text === '!~') {
          try {
            anchored(value.text);
          } catch (error) {
            throw new PromqlError(`bad regular expression "${value.text}" for ${label.text}: ${(error as Error).message}`, value.position);
          }
        }
        matchers.push({ label: label.text, operator: op.text as MatchOperator, value: value.text });
        if (!this.#isOp(',')) break;
        this.#take();
      }
      this.#expect('}');
    }
    if (!matchers.some((matcher) => !matchesEmpty(matcher))) {
      throw new PromqlError('a vector selector needs a metric name or a matcher that does not match the empty string', position);
    }
    const end = this.#peek().position;
    return { type: 'selector', matchers, text: this.#source.slice(position, end).trim() };
  }

  #peek(): Token {
    return this.#tokens[this.#at]!;
  }

  #take(): Token {
    const token = this.#tokens[this.#at]!;
    if (token.kind !== 'end') this.#at += 1;
    return token;
  }

  #isOp(text: string): boolean {
    const token = this.#peek();
    return token.kind === 'op' && token.text === text;
  }

  #word(text: string): boolean {
    const token = this.#peek();
    if (token.kind === 'identifier' && token.text === text) {
      this.#take();
      return true;
    }
    return false;
  }

  #expect(text: string): void {
    const token = this.#take();
    if (token.kind !== 'op' || token.text !== text) throw new PromqlError(`expected "${text}", found ${show(token)}`, token.position);
  }
}

/**
 * A PromQL duration, as Prometheus parses it (model.ParseDuration): integers with units y
 * (365d), w (7d), d (24h), h, m, s, ms, largest first and each at most once (`1h30m`, `1d12h`).
 * No fractions (`1.5m`) and no upper-case units. In milliseconds; undefined when invalid or
 * beyond Prometheus' range (int64 nanoseconds).
 */
const PROM_DURATION = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const PROM_UNITS_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1];
const MAX_PROM_DURATION_MS = Number((2n ** 63n - 1n) / 1_000_000n);

export function parsePromDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const match = PROM_DURATION.exec(text);
  if (!match || text === '') return undefined;
  let total = 0;
  for (let i = 0; i < PROM_UNITS_MS.length; i += 1) {
    if (match[i + 1] !== undefined) total += Number(match[i + 1]) * PROM_UNITS_MS[i]!;
  }
  return total > MAX_PROM_DURATION_MS ? undefined : total;
}

function matchesEmpty(matcher: LabelMatcher): boolean {
  return labelMatches(matcher, '');
}

const ANCHORED = new Map<string, AnchoredRegex>();
let anchoredChars = 0;
/** The cache's bounds: entries, and pattern characters (a 20,000-device cohort is some 200k, and several MB compiled). */
const ANCHORED_MAX_ENTRIES = 1000;
const ANCHORED_MAX_CHARS = 2_000_000;

/**
 * PromQL regex matchers are RE2, fully anchored, and run in linear time (linear-regex.ts).
 * Compiled patterns are cached (bounded by count and by size): parsing a query compiles its
 * matchers once, and evaluating it reuses them.
 */
function anchored(pattern: string): AnchoredRegex {
  let regex = ANCHORED.get(pattern);
  if (!regex) {
    regex = compileAnchored(pattern);
    if (ANCHORED.size >= ANCHORED_MAX_ENTRIES || anchoredChars + pattern.length > ANCHORED_MAX_CHARS) {
      ANCHORED.clear();
      anchoredChars = 0;
    }
    ANCHORED.set(pattern, regex);
    anchoredChars += pattern.length;
  }
  return regex;
}

export function labelMatches(matcher: LabelMatcher, value: string): boolean {
  switch (matcher.operator) {
    case '=': return value === matcher.value;
    case '!=': return value !== matcher.value;
    case '=~': return anchored(matcher.value).matches(value);
    case '!~': return !anchored(matcher.value).matches(value);
  }
}

function show(token: Token): string {
  return token.kind === 'end' ? 'end of query' : `"${token.text}"`;
}

/** The longest range any selector of the expression reads, for fetching history. */
export function longestRangeMs(expr: PromExpr): number {
  switch (expr.type) {
    case 'selector': return expr.rangeMs ?? 0;
    case 'range-call': return longestRangeMs(expr.selector);
    case 'aggregate': return longestRangeMs(expr.expr);
    case 'call': return Math.max(0, ...expr.args.map(longestRangeMs));
    case 'binary': return Math.max(longestRangeMs(expr.left), longestRangeMs(expr.right));
    case 'negate': return longestRangeMs(expr.expr);
    case 'number': return 0;
  }
}
