/**
 * Tokens of analysis condition expressions (successCondition / failureCondition), e.g.
 * `len(result) > 0 && all(result, {# >= baseline - 0.5})`. Positions are 0-based character
 * offsets so errors can point at the column.
 */
export type TokenKind = 'number' | 'identifier' | 'operator' | 'punctuation' | 'hash' | 'end';

export interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  readonly position: number;
}

export class ConditionSyntaxError extends Error {
  readonly position: number;
  constructor(message: string, position: number) {
    super(`${message} at column ${position + 1}`);
    this.name = 'ConditionSyntaxError';
    this.position = position;
  }
}

/** Longest first, so `<=` wins over `<`. */
const OPERATORS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '+', '-', '*', '/', '%'] as const;
const PUNCTUATION = new Set(['(', ')', '[', ']', '{', '}', ',']);
/** Word spellings of the logical operators (as expr-lang, which Argo uses, accepts). */
const WORD_OPERATORS: Readonly<Record<string, string>> = { and: '&&', or: '||', not: '!' };
const MAX_LENGTH = 2000;

export function tokenize(source: string): Token[] {
  if (source.length > MAX_LENGTH) throw new ConditionSyntaxError(`expression is longer than ${MAX_LENGTH} characters`, MAX_LENGTH);
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const ch = source[i]!;
    if (/\s/.test(ch)) {
      i += 1;
      continue;
    }
    const number = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(source.slice(i));
    if (number) {
      const after = source[i + number[0].length];
      if (after !== undefined && /[A-Za-z_]/.test(after)) throw new ConditionSyntaxError(`malformed number "${number[0]}${after}"`, i);
      tokens.push({ kind: 'number', text: number[0], position: i });
      i += number[0].length;
      continue;
    }
    const identifier = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*/.exec(source.slice(i));
    if (identifier) {
      const word = identifier[0];
      // Own keys only: `toString` or `constructor` is a name, not Object.prototype's function.
      const operator = Object.hasOwn(WORD_OPERATORS, word) ? WORD_OPERATORS[word] : undefined;
      tokens.push(operator ? { kind: 'operator', text: operator, position: i } : { kind: 'identifier', text: word, position: i });
      i += word.length;
      continue;
    }
    const operator = OPERATORS.find((op) => source.startsWith(op, i));
    if (operator) {
      tokens.push({ kind: 'operator', text: operator, position: i });
      i += operator.length;
      continue;
    }
    if (PUNCTUATION.has(ch)) {
      tokens.push({ kind: 'punctuation', text: ch, position: i });
      i += 1;
      continue;
    }
    if (ch === '#') {
      tokens.push({ kind: 'hash', text: ch, position: i });
      i += 1;
      continue;
    }
    if (ch === '&' || ch === '|' || ch === '=') throw new ConditionSyntaxError(`unexpected "${ch}" (did you mean "${ch}${ch}"?)`, i);
    throw new ConditionSyntaxError(`unexpected character "${ch}"`, i);
  }
  tokens.push({ kind: 'end', text: '', position: source.length });
  return tokens;
}
