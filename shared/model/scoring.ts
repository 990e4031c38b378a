import type { Task } from '../data/dataset.ts';

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
  // A constant target has no variance to explain: R² is 1 for a perfect fit and 0 otherwise (scikit-learn's convention).
  return { mse: residual / y.length, r2: total === 0 ? (residual === 0 ? 1 : 0) : 1 - residual / total };
}

export function argmax(row: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

export interface Tolerance {
  /** Classification: accuracy may drop by at most this many percentage points. */
  accuracyPoints: number;
  /** Regression: MSE may grow by at most this fraction of the reference's. */
  mseFraction: number;
  /** Classification: cross-entropy may grow by at most this fraction (or by LOSS_FLOOR_NATS). */
  lossFraction: number;
}

/** Cross-entropy may always grow by this much, so a reference loss near zero does not forbid everything. */
export const LOSS_FLOOR_NATS = 0.05;

/**
 * Whether `candidate` stays within tolerance of `reference` on the same split.
 * - Regression: its MSE grows by at most `mseFraction`.
 * - Classification: its accuracy drops by at most `accuracyPoints` and, when the losses are
 *   given, its cross-entropy grows by at most `lossFraction` (or LOSS_FLOOR_NATS). On a small
 *   validation split one row is worth more than the accuracy tolerance, so accuracy alone cannot
 *   tell a sound model from one that is right by thin margins; the loss can.
 */
export function withinTolerance(
  candidate: Score,
  reference: Score,
  tolerance: Tolerance,
  losses?: { candidate: number; reference: number },
): boolean {
  if ('accuracy' in candidate && 'accuracy' in reference) {
    if (candidate.accuracy < reference.accuracy - tolerance.accuracyPoints / 100 - 1e-12) return false;
    if (!losses) return true;
    const allowed = Math.max(losses.reference * (1 + tolerance.lossFraction), losses.reference + LOSS_FLOOR_NATS);
    return losses.candidate <= allowed + 1e-12;
  }
  if ('mse' in candidate && 'mse' in reference) {
    // A relative allowance for rounding: an absolute one (in the label's squared units) let any
    // model through when the label is small (a label around 1e-6 has an MSE around 1e-12).
    return candidate.mse <= reference.mse * (1 + tolerance.mseFraction) * (1 + 1e-9);
  }
  throw new Error('cannot compare scores of different tasks');
}

/** The headline number of a score, higher is better: accuracy, or negated MSE. */
export function scoreValue(score: Score): number {
  return 'accuracy' in score ? score.accuracy : -score.mse;
}

/** An r² with three decimals; one that rounds to zero from below (-0.0002) is 0.000, not -0.000. */
export function formatR2(r2: number): string {
  return (Math.abs(r2) < 0.0005 ? 0 : r2).toFixed(3);
}

/**
 * An MSE (in the label's squared units) for people, to five significant digits: a fixed decimal
 * showed every MSE of a label in small units (a fraction, a rate) as 0.0.
 */
export function formatMse(mse: number): string {
  return Number.isFinite(mse) ? String(Number(mse.toPrecision(5))) : String(mse);
}
