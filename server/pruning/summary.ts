import type { PruneReport } from './report.ts';
import type { Score } from '../../shared/model/scoring.ts';

/** A short human-readable account of a prune run, for the terminal. */
export function formatPruneSummary(report: PruneReport, outDir: string): string {
  const lines = [
    `ODF2NNA on ${report.data.rows} rows (${report.task}, backend ${report.backend}, seed ${report.seed}) in ${report.timing_s.toFixed(1)} s`,
    '',
    '  ε      layers               params   cut     val (retrained)   test (before → after)',
    ...report.sweep.map((entry) =>
      [
        entry.epsilon === report.epsilon ? '* ' : '  ',
        String(entry.epsilon).padEnd(6),
        entry.layers.join('-').padEnd(20),
        String(entry.params).padStart(7),
        `${(entry.param_cut * 100).toFixed(1)}%`.padStart(7),
        `   ${(entry.validation ? formatScore(entry.validation) : 'not retrained').padEnd(17)}`,
        ` ${formatScore(entry.test_before_retrain)}${entry.test ? ` → ${formatScore(entry.test)}` : ''}`,
      ].join(' '),
    ),
    '',
    `original  ${report.layers.original.join('-')}: ${report.original.params} params, test ${formatScore(report.original.test)}`,
    `pruned    ${report.layers.pruned.join('-')}: ${report.pruned.params} params (−${(report.pruned.param_cut * 100).toFixed(1)}%), test ${formatScore(report.pruned.test)}, before retraining ${formatScore(report.pruned.test_before_retrain)}`,
  ];
  if (report.scratch) lines.push(`scratch   same architecture from scratch: test ${formatScore(report.scratch.test)}`);
  if (report.l1) lines.push(`l1        L1-norm unit pruning + retraining: test ${formatScore(report.l1.test)}`);
  lines.push(`chosen ε = ${report.epsilon} (${report.selection})`);
  for (const warning of report.warnings) lines.push(`warning: ${warning}`);
  lines.push(`artifact: ${outDir}`, '');
  return lines.join('\n');
}

export function formatScore(score: Score): string {
  return 'accuracy' in score ? `acc ${(score.accuracy * 100).toFixed(2)}%` : `mse ${score.mse.toFixed(1)} r² ${score.r2.toFixed(3)}`;
}
