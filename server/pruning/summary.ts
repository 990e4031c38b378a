import type { PruneReport, SweepEntry } from './report.ts';
import { formatMse, formatR2, withinTolerance, type Score } from '../../shared/model/scoring.ts';
import { formatParamCut } from '../../shared/model/parameter-cut.ts';

/** A short human-readable account of a prune run, for the terminal. */
export function formatPruneSummary(report: PruneReport, outDir: string): string {
  // Columns as wide as their widest cell: a regression score ("mse 2963.5 r² 0.412") is wider than an accuracy.
  const header = ['ε', 'layers', 'params', 'cut', 'val (retrained)', 'tolerance', 'test (before → after)'];
  const rows = report.sweep.map((entry) => [
    String(entry.epsilon),
    entry.layers.join('-'),
    String(entry.params),
    formatParamCut(entry.param_cut),
    entry.validation ? formatScore(entry.validation) : 'not retrained',
    // Why a smaller retrained model was not chosen: its validation score (or, for a classifier, its cross-entropy) fell outside.
    entry.within_tolerance === null ? '' : entry.within_tolerance ? 'within' : entry.within_tolerance_before_retrain ? 'within before retraining only' : outside(entry, report),
    `${formatScore(entry.test_before_retrain)}${entry.test ? ` → ${formatScore(entry.test)}` : ''}`,
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  // Numbers right-aligned, text left-aligned; the last column unpadded.
  const line = (mark: string, cells: string[]) =>
    (mark + cells.map((cell, i) => (i === 2 || i === 3 ? cell.padStart(widths[i]!) : i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('   ')).trimEnd();
  const lines = [
    `ODF2NNA on ${report.data.rows} rows (${report.task}, backend ${report.backend}, seed ${report.seed}) in ${report.timing_s.toFixed(1)} s`,
    '',
    line('   ', header),
    ...report.sweep.map((entry, i) => line(entry.epsilon === report.epsilon ? ' * ' : '   ', rows[i]!)),
    '',
    // Its validation score is what the tolerance column measures each ε against.
    `original  ${report.layers.original.join('-')}: ${report.original.params} params, validation ${formatScore(report.original.validation)}, test ${formatScore(report.original.test)}`,
    `pruned    ${report.layers.pruned.join('-')}: ${report.pruned.params} params (${report.pruned.param_cut > 0 ? '−' : ''}${formatParamCut(report.pruned.param_cut)}), test ${formatScore(report.pruned.test)}${report.pruned.weights === 'transferred' ? ' (its transferred weights, not the retrained ones)' : `, before retraining ${formatScore(report.pruned.test_before_retrain)}`}`,
  ];
  if (report.scratch) lines.push(`scratch   same architecture from scratch: test ${formatScore(report.scratch.test)}`);
  if (report.l1) lines.push(`l1        L1-norm unit pruning + retraining: test ${formatScore(report.l1.test)}`);
  lines.push(`chosen ε = ${report.epsilon} (${report.selection})`);
  for (const warning of report.warnings) lines.push(`warning: ${warning}`);
  const note = testToleranceNote(report);
  if (note) lines.push(`note: ${note}`);
  lines.push(`artifact: ${outDir}`, '');
  return lines.join('\n');
}

/**
 * When the pruned model's test score falls outside the tolerance of the original's, a sentence
 * saying so (prune's `note:`, a job's warning); undefined otherwise. Reported, never acted on: ε
 * is chosen on the validation split, and choosing it on the test split would make the test score no test.
 */
export function testToleranceNote(report: PruneReport): string | undefined {
  const tolerance = { accuracyPoints: report.tolerance.accuracy_points, mseFraction: report.tolerance.mse_fraction, lossFraction: report.tolerance.loss_fraction };
  if (report.pruned.params >= report.original.params || withinTolerance(report.pruned.test, report.original.test, tolerance)) return undefined;
  const chosen = report.sweep.find((entry) => entry.epsilon === report.epsilon);
  const onValidation = chosen?.within_tolerance === true ? ', though on the validation split it was within' : '';
  return (
    `on the held-out test split the pruned model (${formatScore(report.pruned.test)}) is outside the tolerance of the original (${formatScore(report.original.test)})${onValidation}: ` +
    'look at the sweep before shipping it'
  );
}

/**
 * `outside`, and for a classifier whose accuracy alone stayed within: `outside (cross-entropy)`.
 * Its validation accuracy read as good as the original's, and the table said no more: the user
 * could not tell why a much smaller model was passed over.
 */
function outside(entry: SweepEntry, report: PruneReport): string {
  const { validation } = entry;
  const reference = report.original.validation;
  const tolerance = { accuracyPoints: report.tolerance.accuracy_points, mseFraction: report.tolerance.mse_fraction, lossFraction: report.tolerance.loss_fraction };
  const accuracyWithin = validation !== null && 'accuracy' in validation && 'accuracy' in reference && withinTolerance(validation, reference, tolerance);
  return accuracyWithin ? 'outside (cross-entropy)' : 'outside';
}

export function formatScore(score: Score): string {
  return 'accuracy' in score ? `acc ${(score.accuracy * 100).toFixed(2)}%` : `mse ${formatMse(score.mse)} r² ${formatR2(score.r2)}`;
}
