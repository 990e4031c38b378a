import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { PruneOptionsSchema } from '../../server/pruning/options.ts';
import { GENERAL_SUBDIR, REPORT_FILE } from '../../server/pruning/output-layout.ts';
import { pruneToArtifacts } from '../../server/pruning/prune-to-artifacts.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { tempDir } from '../helpers/cli.ts';

test('a failure after the pruned artifact is written (general/ or report.json) leaves the previous output whole, not replaced by a part', async (t) => {
  const outDir = join(await tempDir(t), 'out');
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const options = PruneOptionsSchema.parse({ task: dataset.task, layers: 2, units: 8, epochs: 5, retrainEpochs: 2, epsilons: [0.5], baselines: false });
  const backend = await initTfjs();
  await pruneToArtifacts({ dataset, options, backend, outDir, name: 'iris' });
  const before = await Promise.all(['manifest.json', REPORT_FILE, join(GENERAL_SUBDIR, 'manifest.json')].map((file) => readFile(join(outDir, file), 'utf8')));

  // The general model's staged artifact disappears once written (as a full disk or a cleaner
  // would make moving it fail): the run fails after the pruned artifact is complete.
  await assert.rejects(
    pruneToArtifacts({
      dataset,
      options: { ...options, seed: options.seed + 1 },
      backend,
      outDir,
      name: 'iris',
      onProgress: (event) => {
        if (event.phase !== 'export' || event.done !== 1) return;
        const staged = readdirSync(dirname(outDir)).filter((name) => name.startsWith(`${basename(outDir)}.general-`));
        assert.equal(staged.length, 1, `the general model's staging directory: ${staged}`);
        rmSync(join(dirname(outDir), staged[0]!), { recursive: true });
      },
    }),
    // The move of the removed directory fails, not the check above (an AssertionError would pass too).
    (error: NodeJS.ErrnoException) => {
      assert.ok(!(error instanceof assert.AssertionError), `the run failed on the test's own check: ${error.message}`);
      assert.equal(error.code, 'ENOENT', String(error));
      assert.match(error.message, new RegExp(`${basename(outDir)}\\.general-`), 'the removed staging directory is the one missing');
      return true;
    },
  );
  const after = await Promise.all(['manifest.json', REPORT_FILE, join(GENERAL_SUBDIR, 'manifest.json')].map((file) => readFile(join(outDir, file), 'utf8')));
  assert.deepEqual(after, before, 'the previous output is untouched');
  assert.deepEqual((await readdir(dirname(outDir))).sort(), ['out'], 'nothing staged is left beside it');
});
