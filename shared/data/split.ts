import { UserError } from '../util/errors.ts';
import { createRng, shuffled } from '../util/rng.ts';
import type { Dataset, Task } from './dataset.ts';

export interface SplitFractions {
  validation: number;
  test: number;
}

export interface Split {
  x: number[][];
  y: number[];
}

export interface Splits {
  train: Split;
  validation: Split;
  test: Split;
}

export const DEFAULT_FRACTIONS: SplitFractions = { validation: 0.15, test: 0.2 };

/**
 * Seeded train/validation/test split. Classification splits are stratified: each class is
 * shuffled and divided in the same proportions, so every split keeps the class balance.
 * Too few rows for a non-empty split of each kind is the user's error (UserError).
 */
export function splitDataset(data: Pick<Dataset, 'x' | 'y' | 'task'>, seed: number, fractions = DEFAULT_FRACTIONS): Splits {
  const rng = createRng(seed);
  const groups = groupIndices(data.y, data.task);
  if (data.task === 'classification') {
    const thin = thinClasses(data.y, fractions).length;
    // Mostly one- or two-row classes: a measured quantity read as class names (a bmi of 26.4).
    if (groups.length > 10 && thin * 2 > groups.length) {
      throw new UserError(
        `the label has ${groups.length} classes over ${data.y.length} rows, ${thin} of them with too few rows to be in the validation and test splits, ` +
          'so no score could measure them: merge or drop the rare classes, or, if the label is a quantity to predict, prune it as a regression (--task regression)',
      );
    }
  }
  const parts: Record<keyof Splits, number[]> = { train: [], validation: [], test: [] };
  for (const group of groups) {
    const order = shuffled(group, rng);
    const nTest = Math.round(order.length * fractions.test);
    const nValidation = Math.round(order.length * fractions.validation);
    // Not push(...slice): spread as arguments, a group of some 190,000 rows overflows the stack.
    order.forEach((index, i) => (i < nTest ? parts.test : i < nTest + nValidation ? parts.validation : parts.train).push(index));
  }
  const empty = (Object.keys(parts) as (keyof Splits)[]).filter((name) => parts[name].length === 0);
  if (empty.length > 0) {
    const percent = (fraction: number) => `${Math.round(fraction * 100)}%`;
    throw new UserError(
      `${data.y.length} rows are too few to split into train, validation (${percent(fractions.validation)}) and test (${percent(fractions.test)})` +
        `${data.task === 'classification' ? ', stratified by class' : ''}: the ${empty.join(' and ')} split${empty.length > 1 ? 's' : ''} would be empty`,
    );
  }
  const take = (indices: number[]): Split => {
    const order = shuffled(indices, rng);
    return { x: order.map((i) => data.x[i]!), y: order.map((i) => data.y[i]!) };
  };
  return { train: take(parts.train), validation: take(parts.validation), test: take(parts.test) };
}

/**
 * Classes (by index, ascending) with too few rows to have one in each of the validation and test
 * splits: no score measures them. Classification only.
 */
export function thinClasses(y: readonly number[], fractions = DEFAULT_FRACTIONS): number[] {
  const counts = new Map<number, number>();
  for (const label of y) counts.set(label, (counts.get(label) ?? 0) + 1);
  return [...counts]
    .filter(([, n]) => Math.round(n * fractions.test) === 0 || Math.round(n * fractions.validation) === 0)
    .map(([label]) => label)
    .sort((a, b) => a - b);
}

function groupIndices(y: readonly number[], task: Task): number[][] {
  if (task === 'regression') return [y.map((_, i) => i)];
  const byClass = new Map<number, number[]>();
  y.forEach((label, i) => {
    const list = byClass.get(label) ?? [];
    list.push(i);
    byClass.set(label, list);
  });
  return [...byClass.keys()].sort((a, b) => a - b).map((label) => byClass.get(label)!);
}
