import { ConditionSyntaxError, tokenize, type Token } from './condition-tokenizer.ts';

/**
 * A recursive-descent parser for condition expressions. Grammar, lowest precedence first:
 *
 *   or         := and ('||' and)*
 *   and        := comparison ('&&' comparison)*
 *   comparison := additive (('==' | '!=' | '<' | '<=' | '>' | '>=') additive)?
 *   additive   := term (('+' | '-') term)*
 *   term       := unary (('*' | '/' | '%') unary)*
 *   unary      := ('!' | '-') unary | postfix
 *   postfix    := primary ('[' or ']')*
 *   primary    := NUMBER | 'true' | 'false' | IDENTIFIER | IDENTIFIER '(' arguments ')'
 *               | '(' or ')' | '#'            (the element, inside an all()/any() predicate)
 *   arguments  := (or | '{' or '}') (',' (or | '{' or '}'))*
 *
 * Comparisons do not chain (`a < b < c` is an error). Identifiers are `result`, `baseline`,
 * declared argument names, and `args.NAME`; functions are listed in FUNCTIONS.
 */
export type ConditionNode =
  | { readonly type: 'number'; readonly value: number; readonly position: number }
  | { readonly type: 'boolean'; readonly value: boolean; readonly position: number }
  | { readonly type: 'identifier'; readonly name: string; readonly position: number }
  | { readonly type: 'element'; readonly position: number }
  | { readonly type: 'unary'; readonly operator: '!' | '-'; readonly operand: ConditionNode; readonly position: number }
  | { readonly type: 'binary'; readonly operator: BinaryOperator; readonly left: ConditionNode; readonly right: ConditionNode; readonly position: number }
  | { readonly type: 'index'; readonly target: ConditionNode; readonly index: ConditionNode; readonly position: number }
  | { readonly type: 'call'; readonly name: FunctionName; readonly args: readonly ConditionNode[]; readonly predicate?: ConditionNode; readonly position: number };

export type ComparisonOperator = '==' | '!=' | '<' | '<=' | '>' | '>=';
export type BinaryOperator = '||' | '&&' | ComparisonOperator | '+' | '-' | '*' | '/' | '%';

/** Function name → [min, max] plain arguments, and whether a trailing `{predicate}` is required. */
export const FUNCTIONS = {
  len: { args: 1, predicate: false },
  all: { args: 1, predicate: true },
  any: { args: 1, predicate: true },
  abs: { args: 1, predicate: false },
  min: { args: 1, predicate: false },
  max: { args: 1, predicate: false },
  avg: { args: 1, predicate: false },
  sum: { args: 1, predicate: false },
  isNaN: { args: 1, predicate: false },
} as const;
export type FunctionName = keyof typeof FUNCTIONS;

const COMPARISONS = new Set<string>(['==', '!=', '<', '<=', '>', '>=']);

export interface ParseOptions {
  /** Names the expression may use besides `result` (e.g. `baseline`, argument names). */
  readonly identifiers: readonly string[];
}

export interface ParsedCondition {
  readonly source: string;
  readonly ast: ConditionNode;
}

export function parseCondition(source: string, options: ParseOptions): ParsedCondition {
  if (source.trim() === '') throw new ConditionSyntaxError('empty expression', 0);
  const parser = new Parser(tokenize(source), new Set(['result', ...options.identifiers]));
  const ast = parser.parseExpression();
  parser.expectEnd();
  return { source, ast };
}

class Parser {
  #tokens: Token[];
  #at = 0;
  #identifiers: ReadonlySet<string>;
  #predicateDepth = 0;

  constructor(tokens: Token[], identifiers: ReadonlySet<string>) {
    this.#tokens = tokens;
    this.#identifiers = identifiers;
  }

  parseExpression(): ConditionNode {
    return this.#or();
  }

  expectEnd(): void {
    const token = this.#peek();
    if (token.kind !== 'end') throw new ConditionSyntaxError(`unexpected ${describe(token)}`, token.position);
  }

  #peek(): Token {
    return this.#tokens[this.#at]!;
  }

  #take(): Token {
    const token = this.#tokens[this.#at]!;
    if (token.kind !== 'end') this.#at += 1;
    return token;
  }

  #isOperator(...texts: string[]): boolean {
    const token = this.#peek();
    return token.kind === 'operator' && texts.includes(token.text);
  }

  #isPunctuation(text: string): boolean {
    const token = this.#peek();
    return token.kind === 'punctuation' && token.text === text;
  }

  #expectPunctuation(text: string, context: string): void {
    const token = this.#take();
    if (token.kind !== 'punctuation' || token.text !== text) {
      throw new ConditionSyntaxError(`expected "${text}" ${context}, found ${describe(token)}`, token.position);
    }
  }

  #or(): ConditionNode {
    let left = this.#and();
    while (this.#isOperator('||')) {
      const op = this.#take();
      left = { type: 'binary', operator: '||', left, right: this.#and(), position: op.position };
    }
    return left;
  }

  #and(): ConditionNode {
    let left = this.#comparison();
    while (this.#isOperator('&&')) {
      const op = this.#take();
      left = { type: 'binary', operator: '&&', left, right: this.#comparison(), position: op.position };
    }
    return left;
  }

  #comparison(): ConditionNode {
    const left = this.#additive();
    const token = this.#peek();
    if (token.kind !== 'operator' || !COMPARISONS.has(token.text)) return left;
    this.#take();
    const right = this.#additive();
    const next = this.#peek();
    if (next.kind === 'operator' && COMPARISONS.has(next.text)) {
      throw new ConditionSyntaxError(`comparisons do not chain; join them with && ("${next.text}")`, next.position);
    }
    return { type: 'binary', operator: token.text as ComparisonOperator, left, right, position: token.position };
  }

  #additive(): ConditionNode {
    let left = this.#term();
    while (this.#isOperator('+', '-')) {
      const op = this.#take();
      left = { type: 'binary', operator: op.text as '+' | '-', left, right: this.#term(), position: op.position };
    }
    return left;
  }

  #term(): ConditionNode {
    let left = this.#unary();
    while (this.#isOperator('*', '/', '%')) {
      const op = this.#take();
      left = { type: 'binary', operator: op.text as '*' | '/' | '%', left, right: this.#unary(), position: op.position };
    }
    return left;
  }

  #unary(): ConditionNode {
    if (this.#isOperator('!', '-')) {
      const op = this.#take();
      return { type: 'unary', operator: op.text as '!' | '-', operand: this.#unary(), position: op.position };
    }
    return this.#postfix();
  }

  #postfix(): ConditionNode {
    let target = this.#primary();
    while (this.#isPunctuation('[')) {
      const open = this.#take();
      const index = this.#or();
      this.#expectPunctuation(']', 'to close the index');
      target = { type: 'index', target, index, position: open.position };
    }
    return target;
  }

  #primary(): ConditionNode {
    const token = this.#take();
    switch (token.kind) {
      case 'number':
        return { type: 'number', value: Number(token.text), position: token.position };
      case 'hash':
        if (this.#predicateDepth === 0) throw new ConditionSyntaxError('"#" is only allowed inside an all()/any() predicate', token.position);
        return { type: 'element', position: token.position };
      case 'identifier':
        if (token.text === 'true' || token.text === 'false') return { type: 'boolean', value: token.text === 'true', position: token.position };
        if (this.#isPunctuation('(')) return this.#call(token);
        if (!this.#identifiers.has(token.text)) {
          const known = [...this.#identifiers].sort().join(', ');
          throw new ConditionSyntaxError(`unknown name "${token.text}" (known: ${known})`, token.position);
        }
        return { type: 'identifier', name: token.text, position: token.position };
      case 'punctuation':
        if (token.text === '(') {
          const inner = this.#or();
          this.#expectPunctuation(')', 'to close "("');
          return inner;
        }
        break;
      default:
        break;
    }
    throw new ConditionSyntaxError(`expected a value, found ${describe(token)}`, token.position);
  }

  #call(name: Token): ConditionNode {
    if (!Object.hasOwn(FUNCTIONS, name.text)) {
      throw new ConditionSyntaxError(`unknown function "${name.text}" (known: ${Object.keys(FUNCTIONS).join(', ')})`, name.position);
    }
    const fn = name.text as FunctionName;
    const spec = FUNCTIONS[fn];
    this.#take(); // (
    const args: ConditionNode[] = [];
    let predicate: ConditionNode | undefined;
    if (!this.#isPunctuation(')')) {
      for (;;) {
        if (this.#isPunctuation('{')) {
          const open = this.#take();
          if (!spec.predicate || predicate) throw new ConditionSyntaxError(`${fn}() takes no {predicate}`, open.position);
          this.#predicateDepth += 1;
          predicate = this.#or();
          this.#predicateDepth -= 1;
          this.#expectPunctuation('}', 'to close the predicate');
        } else {
          if (predicate) throw new ConditionSyntaxError(`the {predicate} must be the last argument of ${fn}()`, this.#peek().position);
          args.push(this.#or());
        }
        if (!this.#isPunctuation(',')) break;
        this.#take();
      }
    }
    this.#expectPunctuation(')', `to close ${fn}(`);
    if (args.length !== spec.args) {
      throw new ConditionSyntaxError(`${fn}() takes ${spec.args} argument${spec.args === 1 ? '' : 's'}${spec.predicate ? ' and a {predicate}' : ''}, got ${args.length}`, name.position);
    }
    if (spec.predicate && !predicate) throw new ConditionSyntaxError(`${fn}() needs a {predicate}, e.g. ${fn}(result, {# > 0})`, name.position);
    return predicate ? { type: 'call', name: fn, args, predicate, position: name.position } : { type: 'call', name: fn, args, position: name.position };
  }
}

function describe(token: Token): string {
  return token.kind === 'end' ? 'end of expression' : `"${token.text}"`;
}
