import type { Task } from '../../shared/data/dataset.ts';

/** Held-out scores: accuracy in [0, 1] for classification; MSE (in label units) and R² for regression. */
export type Score = { accuracy: number } | { mse: number; r2: number };

export function scorePredictions(task: Task, predictions: readonly (readonly number[])[], y: readonly number[]): Score {
  if (y.length === 0) throw new Error('cannot score an empty split');
  if (task === 'classification') {
    let correct = 0;
    predictions.forEach((row, i) => {
      if (argmax(row) === y[i]) correct++;
    });
    return { accuracy: correct / y.length };
  }
  const mean = y.reduce((a, b) => a + b, 0) / y.length;
  let residual = 0;
  let total = 0;
  predictions.forEach((row, i) => {
    residual += (row[0]! - y[i]!) ** 2;
    total += (y[i]! - mean) ** 2;
  });
  return { mse: residual / y.length, r2: total === 0 ? 0 : 1 - residual / total };
}

export function argmax(row: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * Whether `candidate` stays within tolerance of `reference`: accuracy may drop by at most
 * `accuracyPoints` percentage points; MSE may grow by at most `mseFraction` of the reference.
 */
export function withinTolerance(
  candidate: Score,
  reference: Score,
  tolerance: { accuracyPoints: number; mseFraction: number },
): boolean {
  if ('accuracy' in candidate && 'accuracy' in reference) {
    return candidate.accuracy >= reference.accuracy - tolerance.accuracyPoints / 100 - 1e-12;
  }
  if ('mse' in candidate && 'mse' in reference) {
    return candidate.mse <= reference.mse * (1 + tolerance.mseFraction) + 1e-12;
  }
  throw new Error('cannot compare scores of different tasks');
}

/** The headline number of a score, higher is better: accuracy, or negated MSE. */
export function scoreValue(score: Score): number {
  return 'accuracy' in score ? score.accuracy : -score.mse;
}
