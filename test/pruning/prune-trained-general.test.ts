import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { PruneOptionsSchema } from '../../server/pruning/options.ts';
import { pruneToArtifacts } from '../../server/pruning/prune-to-artifacts.ts';
import type { ProgressEvent } from '../../server/pruning/odf2nna.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { tempDir } from '../helpers/cli.ts';

test('a general model trained once is pruned again without training: the same model as a second full run, and never for other options', async (t) => {
  const dir = await tempDir(t);
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const backend = await initTfjs();
  const base = { task: dataset.task, layers: 2, units: 16, epochs: 30, retrainEpochs: 3, epsilons: [0.3], baselines: false };
  const first = await pruneToArtifacts({ dataset, options: PruneOptionsSchema.parse(base), backend, outDir: join(dir, 'first'), name: 'iris', keepGeneral: true });
  const trained = first.trained!;
  t.after(() => trained.model.dispose());
  assert.ok(trained, 'the general model is handed back');

  const overOptions = PruneOptionsSchema.parse({ ...base, epsilons: [0.9], retrainEpochs: 0 });
  const events: ProgressEvent[] = [];
  const reused = await pruneToArtifacts({
    dataset,
    options: overOptions,
    backend,
    outDir: join(dir, 'reused'),
    name: 'iris',
    parent: first.general,
    trained,
    onProgress: (event) => events.push(event),
  });
  assert.equal(reused.report.phase_timing_s.train, undefined, 'no training phase');
  assert.ok(events.some((e) => e.phase === 'train' && e.detail === 'trained before'));
  assert.equal(reused.pruned.lineage.parentSha256, artifactId(first.general));
  // The caller's model is left alive: it can be pruned a third time.
  assert.equal(trained.model.layers[0]!.getWeights()[0]!.isDisposed, false);

  // A full second run (training the general model again, as the demo used to) gives the same model.
  const full = await pruneToArtifacts({ dataset, options: overOptions, backend, outDir: join(dir, 'full'), name: 'iris' });
  assert.deepEqual(reused.report.layers, full.report.layers);
  assert.deepEqual(reused.report.pruned.test, full.report.pruned.test);
  assert.deepEqual(reused.report.original, { ...full.report.original });
  assert.equal(reused.pruned.files['model.onnx']!.sha256, full.pruned.files['model.onnx']!.sha256, 'the same weights');

  // Options the general model depends on must match, or it would be a different general model.
  await assert.rejects(
    pruneToArtifacts({ dataset, options: PruneOptionsSchema.parse({ ...base, units: 8 }), backend, outDir: join(dir, 'other'), name: 'iris', trained }),
    /trained on other data or options/,
  );
});
