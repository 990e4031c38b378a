import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPhaseProgress } from '../../server/cli/progress.ts';
import { PHASES, type Phase } from '../../server/pruning/progress-events.ts';

/** A non-TTY stream that keeps what is written to it. */
function plainStream(): { stream: NodeJS.WriteStream; lines: () => string[] } {
  let text = '';
  const stream = { isTTY: false, write: (chunk: string) => ((text += chunk), true) } as unknown as NodeJS.WriteStream;
  return { stream, lines: () => text.trimEnd().split('\n').map((line) => line.replace(/ \(\d+\.\d s\)$/, '')) };
}

test('plain progress: one numbered line per finished phase, and a phase that never ran (baselines off) is named as skipped, not left as a gap', () => {
  const { stream, lines } = plainStream();
  const progress = createPhaseProgress(stream);
  const ran: Phase[] = PHASES.filter((phase) => phase !== 'baselines');
  for (const phase of ran) {
    progress.update({ phase, done: 0, total: 2 });
    progress.update({ phase, done: 2, total: 2 });
    progress.update({ phase, done: 2, total: 2 });
  }
  progress.stop();
  assert.deepEqual(lines(), [
    '[1/6] train done',
    '[2/6] measure done',
    '[3/6] rebuild done',
    '[4/6] retrain done',
    '[5/6] baselines skipped',
    '[6/6] export done',
  ]);
});

test('plain progress: every phase run gives its six lines, none skipped', () => {
  const { stream, lines } = plainStream();
  const progress = createPhaseProgress(stream);
  for (const phase of PHASES) progress.update({ phase, done: 1, total: 1 });
  assert.deepEqual(lines(), PHASES.map((phase, i) => `[${i + 1}/6] ${phase} done`));
});

test('plain progress: a phase still running says how far it has got every half minute, and only then', () => {
  let text = '';
  const stream = { isTTY: false, write: (chunk: string) => ((text += chunk), true) } as unknown as NodeJS.WriteStream;
  let clock = 0;
  const progress = createPhaseProgress(stream, () => clock);
  for (let epoch = 1; epoch <= 200; epoch++) {
    clock += 1_000; // an epoch a second
    progress.update({ phase: 'train', done: epoch, total: 200, detail: `epoch ${epoch}` });
  }
  assert.deepEqual(text.trimEnd().split('\n'), [
    ...[30, 60, 90, 120, 150, 180].map((s) => `[1/6] train ${s}/200 epoch ${s} (${s} s so far)`),
    '[1/6] train done (200.0 s)',
  ]);
});

test('plain progress: the first phase\'s time runs from its first event at 0 (the run\'s start), not from before the data was read', () => {
  let text = '';
  const stream = { isTTY: false, write: (chunk: string) => ((text += chunk), true) } as unknown as NodeJS.WriteStream;
  let clock = 0;
  const progress = createPhaseProgress(stream, () => clock);
  clock = 5_000; // reading the data, loading the backend
  progress.update({ phase: 'train', done: 0, total: 10 });
  clock = 6_500;
  progress.update({ phase: 'train', done: 10, total: 10 });
  clock = 7_000;
  progress.update({ phase: 'measure', done: 1, total: 1 });
  assert.deepEqual(text.trimEnd().split('\n'), ['[1/6] train done (1.5 s)', '[2/6] measure done (0.5 s)']);
});

test('a terminal that cannot move the cursor (TERM=dumb) gets the plain lines, not bars drawn with control codes; so does a rollout watch', async () => {
  const { drawsBars } = await import('../../server/cli/terminal.ts');
  const tty = { isTTY: true } as unknown as NodeJS.WriteStream;
  assert.equal(drawsBars(tty, { TERM: 'xterm-256color' }), true);
  assert.equal(drawsBars(tty, {}), true);
  assert.equal(drawsBars(tty, { TERM: 'dumb' }), false);
  assert.equal(drawsBars({ isTTY: false } as unknown as NodeJS.WriteStream, { TERM: 'xterm' }), false);
  // Through the real commands' progress, on a stream that says it is a terminal.
  const saved = process.env.TERM;
  process.env.TERM = 'dumb';
  try {
    let text = '';
    const stream = { isTTY: true, columns: 80, write: (chunk: string) => ((text += chunk), true) } as unknown as NodeJS.WriteStream;
    const progress = createPhaseProgress(stream);
    progress.update({ phase: 'train', done: 1, total: 1 });
    progress.stop();
    const { createRolloutProgress } = await import('../../server/cli/rollout-display.ts');
    const rollout = createRolloutProgress(3, stream);
    rollout.stop();
    assert.equal(text.replace(/ \(\d+\.\d s\)/, ''), '[1/6] train done\n');
    assert.doesNotMatch(text, /\x1b/, 'no control codes');
  } finally {
    if (saved === undefined) delete process.env.TERM;
    else process.env.TERM = saved;
  }
});
