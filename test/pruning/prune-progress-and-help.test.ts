import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PruneOptionsSchema } from '../../server/pruning/options.ts';
import { runCliBatch } from '../helpers/cli.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { type ProgressEvent, runOdf2nna } from '../../server/pruning/odf2nna.ts';

test('prune --help states the defaults of --layers, --units, --epochs and --seed, as the options apply them', async () => {
  const [run] = await runCliBatch([{ args: ['prune', '--help'] }]);
  assert.equal(run!.code, 0, run!.stderr);
  // commander wraps the descriptions: compare them as one line.
  const help = run!.stdout.replace(/\s+/g, ' ');
  const defaults = PruneOptionsSchema.parse({});
  for (const [flag, value] of [['--layers', defaults.layers], ['--units', defaults.units], ['--epochs', defaults.epochs], ['--seed', defaults.seed]] as const) {
    const description = help.slice(help.indexOf(`${flag} <n>`), help.indexOf(' --', help.indexOf(`${flag} <n>`) + 2));
    assert.match(description, new RegExp(`\\(default ${value}\\)`), description);
  }
});

test('the train phase ends at epochs/epochs, and says at which epoch early stopping ended it', async () => {
  const backend = await initTfjs();
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  // A patience of 2 stops the training long before 200 epochs.
  const options = PruneOptionsSchema.parse({ units: 8, epochs: 200, patience: 2, epsilons: [0.5], retrainEpochs: 2, baselines: false, seed: 1 });
  const events: ProgressEvent[] = [];
  const result = await runOdf2nna(dataset, options, backend, (event) => {
    if (event.phase === 'train') events.push(event);
  });
  result.general.model.dispose();
  result.pruned.model.dispose();
  const ran = result.report.original.epochs;
  assert.ok(ran < 200, `early stopping ended the training after ${ran} epochs`);
  const last = events.at(-1)!;
  assert.deepEqual([last.done, last.total], [200, 200]);
  // The bar showed "200/200" with nothing else, read as 200 epochs trained.
  assert.equal(last.detail, `early stop at epoch ${ran}`);
});
