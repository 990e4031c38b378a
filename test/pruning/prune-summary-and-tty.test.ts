import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { formatPruneSummary } from '../../server/pruning/summary.ts';
import { summaryWarnings } from '../../server/jobs/prune-worker-protocol.ts';
import type { PruneReport, SweepEntry } from '../../server/pruning/report.ts';
import { REPO_ROOT, tempDir } from '../helpers/cli.ts';

function entry(epsilon: number, params: number, fields: Partial<SweepEntry>): SweepEntry {
  const score = { mse: 0.0036, r2: 0.38 };
  return {
    epsilon,
    layers: [8, 4, 1],
    params,
    flops: params * 2,
    param_cut: 1 - params / 200,
    retrained: false,
    validation_before_retrain: score,
    validation: null,
    validation_loss: null,
    validation_loss_before_retrain: null,
    test_before_retrain: score,
    test: null,
    within_tolerance: null,
    within_tolerance_before_retrain: null,
    weights: null,
    ...fields,
  };
}

/** A regression report on a label in small units (MSE around 0.004), ε 0.3 chosen over a smaller ε 0.7 outside tolerance. */
function regressionReport(): PruneReport {
  const sweep = [
    entry(0.1, 180, {}),
    entry(0.3, 120, { retrained: true, validation: { mse: 0.0041, r2: 0.3 }, validation_loss: 0.6, test: { mse: 0.0035, r2: 0.39 }, within_tolerance: true, within_tolerance_before_retrain: false, weights: 'retrained' }),
    entry(0.7, 40, { layers: [2, 2, 1], retrained: true, validation: { mse: 0.0063, r2: 0.1 }, validation_loss: 0.9, test: { mse: 0.0061, r2: 0.12 }, within_tolerance: false, within_tolerance_before_retrain: false, weights: 'retrained' }),
  ];
  const score = { mse: 0.00356, r2: 0.382 };
  return {
    tool: { name: 'fleetprune', version: '0.1.0' },
    task: 'regression',
    backend: 'wasm',
    options: { seed: 42 },
    seed: 42,
    epsilon: 0.3,
    epsilon_mode: 'relative',
    selection: 'smallest model within tolerance of the original on validation',
    warnings: [],
    tolerance: { accuracy_points: 0.5, mse_fraction: 0.02, loss_fraction: 0.5 },
    l1_penalty: { input: 1e-3, hidden: 3e-4 },
    data: { fingerprint: 'f', rows: 442, features: 10, classes: [], split: { train: 287, validation: 66, test: 89 } },
    timing_s: 1,
    phase_timing_s: {},
    training_threads: 1,
    sweep,
    layers: { original: [16, 16, 1], pruned: [8, 4, 1] },
    original: { params: 200, flops: 400, epochs: 20, validation: score, validation_loss: 0.5, test: score },
    pruned: { params: 120, flops: 240, param_cut: 0.4, validation: sweep[1]!.validation!, test: sweep[1]!.test!, test_before_retrain: score, weights: 'retrained' },
    scratch: { test: score, epochs: 20 },
    l1: { test: score },
  };
}

test('the summary shows an MSE in small units with its digits, not as 0.0', () => {
  const summary = formatPruneSummary(regressionReport(), '/tmp/out');
  assert.doesNotMatch(summary, /mse 0\.0 /, summary);
  assert.match(summary, /original .*test mse 0\.00356 r² 0\.382/, summary);
  assert.match(summary, /pruned .*test mse 0\.0035 r² 0\.390/, summary);
});

test('the sweep table keeps its columns aligned for regression scores and says which retrained ε fell outside the tolerance', () => {
  const summary = formatPruneSummary(regressionReport(), '/tmp/out');
  const lines = summary.split('\n');
  const header = lines.find((line) => line.includes('val (retrained)'))!;
  const rows = lines.filter((line) => /^[ *]*0\.\d +\d+-\d/.test(line));
  assert.equal(rows.length, 3, summary);
  // Every row's test scores start under the header's "test" column, whatever the width of the validation score.
  const testColumn = header.indexOf('test (before');
  for (const row of rows) assert.match(row.slice(testColumn), /^mse /, `${row}\n${header}`);
  const row07 = rows.find((row) => row.includes(' 0.7 '))!;
  const row03 = rows.find((row) => row.includes(' 0.3 '))!;
  assert.match(row07, /\boutside\b/, summary);
  assert.match(row03, /\bwithin\b/, summary);
  assert.ok(row03.trimStart().startsWith('*'), 'the chosen ε is marked');
});

test('a classifier passed over for its cross-entropy alone says so; one whose accuracy fell outside says outside', () => {
  const report = regressionReport();
  const accuracy = (value: number) => ({ accuracy: value });
  const classifier: PruneReport = {
    ...report,
    task: 'classification',
    epsilon: 0.2,
    original: { ...report.original, validation: accuracy(1), validation_loss: 0.05 },
    sweep: [
      entry(0.2, 120, { retrained: true, validation: accuracy(1), validation_loss: 0.06, test: accuracy(0.93), within_tolerance: true, within_tolerance_before_retrain: false, weights: 'retrained' }),
      // As accurate as the original on validation, its cross-entropy past the allowed max(1.5 × 0.05, 0.05 + 0.05) nats.
      entry(0.5, 40, { retrained: true, validation: accuracy(1), validation_loss: 0.12, test: accuracy(0.97), within_tolerance: false, within_tolerance_before_retrain: false, weights: 'retrained' }),
      entry(0.7, 20, { retrained: true, validation: accuracy(0.9), validation_loss: 0.4, test: accuracy(0.9), within_tolerance: false, within_tolerance_before_retrain: false, weights: 'retrained' }),
    ],
  };
  const rows = formatPruneSummary(classifier, '/tmp/out').split('\n');
  assert.match(rows.find((row) => row.includes(' 0.5 '))!, /\boutside \(cross-entropy\)   /);
  assert.match(rows.find((row) => row.includes(' 0.7 '))!, /\boutside   /);
  assert.doesNotMatch(rows.find((row) => row.includes(' 0.7 '))!, /cross-entropy/);
});

test('the summary gives the original\'s validation score (what the tolerance column compares with), and notes a pruned model outside the tolerance on the test split', () => {
  const report = regressionReport();
  const accuracy = (value: number) => ({ accuracy: value });
  const classifier: PruneReport = {
    ...report,
    task: 'classification',
    epsilon: 0.5,
    original: { ...report.original, validation: accuracy(1), validation_loss: 0.05, test: accuracy(0.9667) },
    sweep: [entry(0.5, 40, { retrained: true, validation: accuracy(1), validation_loss: 0.06, test: accuracy(0.8333), within_tolerance: true, within_tolerance_before_retrain: true, weights: 'retrained' })],
    pruned: { ...report.pruned, params: 40, validation: accuracy(1), test: accuracy(0.8333), test_before_retrain: accuracy(0.8) },
  };
  const summary = formatPruneSummary(classifier, '/tmp/out');
  assert.match(summary, /^original {2}16-16-1: 200 params, validation acc 100\.00%, test acc 96\.67%$/m);
  assert.match(summary, /^note: on the held-out test split the pruned model \(acc 83\.33%\) is outside the tolerance of the original \(acc 96\.67%\), though on the validation split it was within: look at the sweep before shipping it$/m);
  // A server job says the same among its summary's warnings (jobs show prints them).
  assert.deepEqual(summaryWarnings({ ...classifier, warnings: ['a data warning'] }), [
    'a data warning',
    'on the held-out test split the pruned model (acc 83.33%) is outside the tolerance of the original (acc 96.67%), though on the validation split it was within: look at the sweep before shipping it',
  ]);
  // Within the tolerance on the test split too: no note.
  const close: PruneReport = { ...classifier, pruned: { ...classifier.pruned, test: accuracy(0.9633) } };
  assert.doesNotMatch(formatPruneSummary(close, '/tmp/out'), /^note:/m);
  assert.deepEqual(summaryWarnings({ ...close, warnings: [] }), []);
});

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('on a 40-column terminal the bars fit it and the summary is written after them, with line wrapping back on', { skip: !hasScript() && 'no script(1)' }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
  const args = [process.execPath, 'bin/fleetprune.js', 'prune', '--data', shippedDatasetPath('iris'), '--label', 'species', '--units', '8', '--epochs', '2', '--epsilon', '0.5', '--out', out];
  const command = `stty cols 40; ${args.map(quote).join(' ')}`;
  const raw = await new Promise<string>((resolve, reject) =>
    execFile('script', ['-qec', command, '/dev/null'], { cwd: REPO_ROOT, env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent', TERM: 'xterm' }, timeout: 120_000 }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    ),
  );
  const summaryAt = raw.indexOf('ODF2NNA on ');
  assert.ok(summaryAt > 0, raw);
  // The bars turn the terminal's line wrapping off (ESC[?7l), which cuts every longer line at its right edge.
  assert.ok(raw.lastIndexOf('\x1b[?7h') < summaryAt && raw.lastIndexOf('\x1b[?7l') < summaryAt, 'line wrapping is back on before the summary');
  assert.ok(!/\x1b\[\d*A/.test(raw.slice(summaryAt)), 'nothing is redrawn over the summary');
  // Every bar's line, as drawn, fits 40 columns, so its count shows.
  const bars = raw
    .slice(0, summaryAt)
    .split(/\r?\n|\x1b\[1G/)
    .map((line) => line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''))
    .filter((line) => line.includes('|'));
  assert.ok(bars.some((line) => /export +\|[█░]+\| 2\/2/.test(line)), bars.join('\n'));
  for (const line of bars) assert.ok([...line].length <= 40, `${[...line].length} columns: ${line}`);
});
