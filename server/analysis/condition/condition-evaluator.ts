import type { ConditionNode, ParsedCondition } from './condition-parser.ts';

/** What a condition is evaluated against. `result` is a number or a vector of numbers. */
export interface ConditionScope {
  readonly result: number | readonly number[];
  readonly baseline?: number | readonly number[];
  readonly args?: Readonly<Record<string, string | number>>;
}

export type ConditionValue = number | boolean | readonly number[];

export class ConditionEvaluationError extends Error {
  constructor(message: string, position: number) {
    super(`${message} (column ${position + 1})`);
    this.name = 'ConditionEvaluationError';
  }
}

/** Evaluates a parsed condition; its value must be a boolean. */
export function evaluateCondition(condition: ParsedCondition, scope: ConditionScope): boolean {
  const value = evaluate(condition.ast, scope, undefined);
  if (typeof value !== 'boolean') {
    throw new ConditionEvaluationError(`the condition must be true or false, but it is ${show(value)}`, condition.ast.position);
  }
  return value;
}

/** Evaluates any sub-expression (used for thresholds); exported for tests. */
export function evaluateNode(node: ConditionNode, scope: ConditionScope, element?: number): ConditionValue {
  return evaluate(node, scope, element);
}

function evaluate(node: ConditionNode, scope: ConditionScope, element: number | undefined): ConditionValue {
  switch (node.type) {
    case 'number':
    case 'boolean':
      return node.value;
    case 'element':
      if (element === undefined) throw new ConditionEvaluationError('"#" outside a predicate', node.position);
      return element;
    case 'identifier':
      return lookup(node.name, scope, node.position);
    case 'unary': {
      const operand = evaluate(node.operand, scope, element);
      if (node.operator === '!') return !asBoolean(operand, '!', node.position);
      return -asNumber(operand, 'unary -', node.position);
    }
    case 'index': {
      const target = evaluate(node.target, scope, element);
      const index = asNumber(evaluate(node.index, scope, element), 'an index', node.position);
      const vector = asVector(target, 'indexing', node.position);
      if (!Number.isInteger(index) || index < 0) throw new ConditionEvaluationError(`index ${index} is not a non-negative integer`, node.position);
      if (index >= vector.length) throw new ConditionEvaluationError(`index ${index} is out of range (the vector has ${vector.length} value${vector.length === 1 ? '' : 's'})`, node.position);
      return vector[index]!;
    }
    case 'binary':
      return binary(node, scope, element);
    case 'call':
      return call(node, scope, element);
  }
}

function binary(node: Extract<ConditionNode, { type: 'binary' }>, scope: ConditionScope, element: number | undefined): ConditionValue {
  const { operator } = node;
  if (operator === '&&' || operator === '||') {
    const left = asBoolean(evaluate(node.left, scope, element), operator, node.position);
    if (operator === '&&' && !left) return false;
    if (operator === '||' && left) return true;
    return asBoolean(evaluate(node.right, scope, element), operator, node.position);
  }
  const leftValue = evaluate(node.left, scope, element);
  const rightValue = evaluate(node.right, scope, element);
  if ((operator === '==' || operator === '!=') && typeof leftValue === 'boolean' && typeof rightValue === 'boolean') {
    return operator === '==' ? leftValue === rightValue : leftValue !== rightValue;
  }
  const left = asNumber(leftValue, `"${operator}"`, node.position);
  const right = asNumber(rightValue, `"${operator}"`, node.position);
  switch (operator) {
    case '==': return left === right;
    case '!=': return left !== right;
    case '<': return left < right;
    case '<=': return left <= right;
    case '>': return left > right;
    case '>=': return left >= right;
    case '+': return left + right;
    case '-': return left - right;
    case '*': return left * right;
    case '/':
      if (right === 0) throw new ConditionEvaluationError('division by zero', node.position);
      return left / right;
    case '%':
      if (right === 0) throw new ConditionEvaluationError('modulo by zero', node.position);
      return left % right;
  }
}

function call(node: Extract<ConditionNode, { type: 'call' }>, scope: ConditionScope, element: number | undefined): ConditionValue {
  const argument = evaluate(node.args[0]!, scope, element);
  switch (node.name) {
    case 'len':
      return asVector(argument, 'len()', node.position).length;
    case 'all':
    case 'any': {
      const vector = asVector(argument, `${node.name}()`, node.position);
      const test = (value: number) => asBoolean(evaluate(node.predicate!, scope, value), `${node.name}() predicate`, node.position);
      return node.name === 'all' ? vector.every(test) : vector.some(test);
    }
    case 'abs':
      return Math.abs(asNumber(argument, 'abs()', node.position));
    case 'isNaN':
      return Number.isNaN(asNumber(argument, 'isNaN()', node.position));
    case 'min':
    case 'max':
    case 'avg':
    case 'sum': {
      const vector = asVector(argument, `${node.name}()`, node.position);
      if (vector.length === 0 && node.name !== 'sum') throw new ConditionEvaluationError(`${node.name}() of an empty vector`, node.position);
      // A loop, not Math.min(...vector): spreading a large result (a fleet's series) overflows the stack.
      if (node.name === 'min' || node.name === 'max') {
        let extreme = vector[0]!;
        for (const value of vector) {
          if (Number.isNaN(value)) return Number.NaN; // as Math.min/Math.max
          if (node.name === 'min' ? value < extreme : value > extreme) extreme = value;
        }
        return extreme;
      }
      const total = vector.reduce((a, b) => a + b, 0);
      return node.name === 'sum' ? total : total / vector.length;
    }
  }
}

function lookup(name: string, scope: ConditionScope, position: number): ConditionValue {
  if (name === 'result') return scope.result;
  if (name === 'baseline') {
    if (scope.baseline === undefined) throw new ConditionEvaluationError('"baseline" has no value (the metric defines no baseline)', position);
    return scope.baseline;
  }
  const argName = name.startsWith('args.') ? name.slice(5) : name;
  const raw = scope.args?.[argName];
  if (raw === undefined) throw new ConditionEvaluationError(`argument "${argName}" has no value`, position);
  const value = typeof raw === 'number' ? raw : Number(raw);
  if (typeof raw === 'string' && (raw.trim() === '' || Number.isNaN(value))) {
    throw new ConditionEvaluationError(`argument "${argName}" is "${raw}", not a number`, position);
  }
  return value;
}

function asNumber(value: ConditionValue, context: string, position: number): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') throw new ConditionEvaluationError(`${context} needs a number, got ${value}`, position);
  if (value.length === 1) return value[0]!;
  throw new ConditionEvaluationError(
    `${context} needs a single number, got a vector of ${value.length} values; index it (result[0]) or use all()/any()`,
    position,
  );
}

function asVector(value: ConditionValue, context: string, position: number): readonly number[] {
  if (typeof value === 'number') return [value];
  if (typeof value === 'boolean') throw new ConditionEvaluationError(`${context} needs a vector, got ${value}`, position);
  return value;
}

function asBoolean(value: ConditionValue, context: string, position: number): boolean {
  if (typeof value === 'boolean') return value;
  throw new ConditionEvaluationError(`${context} needs true or false, got ${show(value)}`, position);
}

function show(value: ConditionValue): string {
  return typeof value === 'object' ? `[${value.join(', ')}]` : String(value);
}

/**
 * The number a condition compares the result with, for dashboards and the decision log:
 * in the first comparison with `result` (or `#`) on exactly one side, the other side's value.
 * `result[0] >= 0.95` → 0.95; `result <= baseline * 1.1` → baseline × 1.1. Undefined when the
 * expression has no such comparison or the other side cannot be evaluated.
 */
export function conditionThreshold(condition: ParsedCondition, scope: ConditionScope): number | undefined {
  return findThreshold(condition.ast, scope);
}

function findThreshold(node: ConditionNode, scope: ConditionScope): number | undefined {
  if (node.type === 'binary') {
    if (['==', '!=', '<', '<=', '>', '>='].includes(node.operator)) {
      const leftUses = usesResult(node.left);
      const rightUses = usesResult(node.right);
      if (leftUses === rightUses) return undefined;
      try {
        const value = evaluate(leftUses ? node.right : node.left, scope, undefined);
        return typeof value === 'number' ? value : Array.isArray(value) && value.length === 1 ? (value[0] as number) : undefined;
      } catch {
        return undefined;
      }
    }
    return findThreshold(node.left, scope) ?? findThreshold(node.right, scope);
  }
  if (node.type === 'unary') return findThreshold(node.operand, scope);
  if (node.type === 'call' && node.predicate) return findThreshold(node.predicate, scope);
  return undefined;
}

function usesResult(node: ConditionNode): boolean {
  switch (node.type) {
    case 'identifier': return node.name === 'result';
    case 'element': return true;
    case 'unary': return usesResult(node.operand);
    case 'binary': return usesResult(node.left) || usesResult(node.right);
    case 'index': return usesResult(node.target) || usesResult(node.index);
    case 'call': return node.args.some(usesResult);
    default: return false;
  }
}

/** Whether the expression mentions `name` (e.g. `baseline`), so validation can require it. */
export function conditionUses(condition: ParsedCondition, name: string): boolean {
  const visit = (node: ConditionNode): boolean => {
    switch (node.type) {
      case 'identifier': return node.name === name;
      case 'unary': return visit(node.operand);
      case 'binary': return visit(node.left) || visit(node.right);
      case 'index': return visit(node.target) || visit(node.index);
      case 'call': return node.args.some(visit) || (node.predicate !== undefined && visit(node.predicate));
      default: return false;
    }
  };
  return visit(condition.ast);
}
