import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmod, chown, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactId, ManifestSchema } from '../../shared/artifact/manifest.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { isOneLineError, REPO_ROOT, runCli, runCliBatch, tempDir } from '../helpers/cli.ts';
import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-io.ts';
import { loadTfjsNetwork } from '../../shared/artifact/tfjs-files.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { forward } from '../../shared/model/dense-network.ts';

function tfjsNodeInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

const IRIS = shippedDatasetPath('iris');
const SMALL = ['--units', '16', '--epochs', '25'];

test('prune writes a signed artifact, its parent, and report.json; verify accepts both', async (t) => {
  const dir = await tempDir(t);
  const keys = await runCli(['keys', 'generate', '--out', join(dir, 'keys')]);
  assert.equal(keys.code, 0, keys.stderr);
  const out = join(dir, 'iris-model');
  const run = await runCli(['prune', '--data', IRIS, '--label', 'species', ...SMALL, '--full-sweep', '--sign-key', join(dir, 'keys', 'signing.key'), '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /chosen ε = /);
  assert.match(run.stderr, /\[6\/6\] export done/, 'not a TTY: plain progress lines, one per phase');
  assert.match(run.stderr, /^backend: (wasm|tensorflow|cpu)$/m, 'the backend is named before the first phase, whatever the log level');
  assert.doesNotMatch(run.stderr, /can be read by other users/, 'keys generate writes the key 0600');

  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  for (const field of ['task', 'epsilon', 'seed', 'timing_s', 'sweep']) assert.ok(field in report, field);
  // Every phase the progress shows is timed, and the total covers them.
  assert.deepEqual(Object.keys(report.phase_timing_s).sort(), ['baselines', 'export', 'measure', 'rebuild', 'retrain', 'train']);
  const phases = Object.values(report.phase_timing_s as Record<string, number>).reduce((a, b) => a + b, 0);
  assert.ok(report.timing_s >= phases, `timing_s ${report.timing_s} covers the phases (${phases})`);
  assert.equal(report.task, 'classification');
  assert.equal(report.sweep.length, 6);
  assert.ok(report.sweep.every((entry: { retrained: boolean }) => entry.retrained), '--full-sweep retrains every ε');
  assert.equal(typeof report.original.params, 'number');
  assert.equal(typeof report.pruned.params, 'number');
  assert.deepEqual(report.layers.original, [16, 16, 16, 3]);
  assert.equal(report.layers.pruned.length, 4);
  for (const key of ['original', 'pruned', 'scratch', 'l1']) assert.equal(typeof report[key].test.accuracy, 'number', key);
  assert.equal(typeof report.pruned.test_before_retrain.accuracy, 'number');
  assert.deepEqual(report.l1_penalty, { input: 1e-3, hidden: 3e-4 }, 'the default L1 penalties are recorded');
  assert.equal(report.tolerance.loss_fraction, 0.5);

  const pruned = ManifestSchema.parse(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')));
  const general = ManifestSchema.parse(JSON.parse(await readFile(join(out, 'general', 'manifest.json'), 'utf8')));
  assert.equal(pruned.lineage.parentSha256, artifactId(general), 'the pruned model names the general model as its parent');
  assert.equal(pruned.lineage.epsilon, report.epsilon);
  assert.equal(pruned.lineage.method, 'odf2nna');
  assert.equal(pruned.architecture.params, report.pruned.params);
  assert.equal(general.architecture.params, report.original.params);
  assert.deepEqual(pruned.features, ['sepal_length_cm', 'sepal_width_cm', 'petal_length_cm', 'petal_width_cm']);
  assert.deepEqual(pruned.labels, ['setosa', 'versicolor', 'virginica']);
  assert.equal(pruned.metrics.test.accuracy, report.pruned.test.accuracy);

  // What trained the models, in report.json and, signed, in each artifact's training.json.
  // The version, and the commit of the checkout the tests run from (every build is 0.1.0 until a release).
  const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  assert.deepEqual(report.tool, { name: 'fleetprune', version: JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')).version, commit });
  assert.equal(report.options.units, 16);
  assert.equal(report.options.epochs, 25);
  assert.equal(report.options.retrainEpochs, 25, 'the retraining budget as it worked out: 60 capped at --epochs');
  assert.equal(report.options.retrainLearningRate, report.options.learningRate / 2);
  assert.equal(report.options.batchSize, 16, 'the batch size the training split gave');
  assert.equal(report.options.fullSweep, true);
  for (const [artifact, manifest] of [[out, pruned], [join(out, 'general'), general]] as const) {
    // model.onnx names its producer as tools such as Netron show it: the version, the commit as build metadata.
    const onnxModel = onnxProto.onnx.ModelProto.decode(await readFile(join(artifact, 'model.onnx')));
    assert.deepEqual([onnxModel.producerName, onnxModel.producerVersion], ['fleetprune', `${report.tool.version}+${commit.slice(0, 12)}`]);
    assert.ok(manifest.files['training.json'], `${artifact}: the manifest lists training.json, so the signature covers it`);
    const training = JSON.parse(await readFile(join(artifact, 'training.json'), 'utf8'));
    assert.deepEqual(training, { tool: report.tool, backend: report.backend, options: report.options });
  }

  const pub = join(dir, 'keys', 'signing.pub');
  const rows = loadDatasetFile(IRIS, { label: 'species' }).x;
  for (const artifact of [out, join(out, 'general')]) {
    const verify = await runCli(['verify', artifact, '--public-key', pub]);
    assert.equal(verify.code, 0, verify.stderr);
    // The tfjs model kept for lineage and retraining runs on raw features too, as model.onnx does.
    const network = await loadTfjsNetwork(join(artifact, 'tfjs'));
    const session = await ort.InferenceSession.create(await readFile(join(artifact, 'model.onnx')));
    const width = rows[0]!.length;
    const onnx = (await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, width]) }))[ONNX_OUTPUT]!.data as Float32Array;
    await session.release();
    const tfjs = forward(network, rows).flat();
    assert.ok(tfjs.every((value, i) => Math.abs(value - onnx[i]!) <= 1e-4), `${artifact}: tfjs and onnx disagree`);
  }
});

test('a single --epsilon prunes at that ε alone', async (t) => {
  const out = join(await tempDir(t), 'model');
  const run = await runCli(['prune', '--data', IRIS, '--label', 'species', ...SMALL, '--epsilon', '0.4', '--seed', '9', '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.equal(report.epsilon, 0.4);
  assert.equal(report.seed, 9);
  assert.deepEqual(report.sweep.map((entry: { epsilon: number }) => entry.epsilon), [0.4]);
});

test('--tolerance is read in the unit of the inferred task: 200 is 200% of the MSE for a regression label; --training-threads 2 trains on a second thread', async (t) => {
  const out = join(await tempDir(t), 'model');
  const run = await runCli(['prune', '--data', shippedDatasetPath('diabetes'), '--label', 'progression', '--units', '4', '--epochs', '2', '--epsilon', '0.5', '--tolerance', '200', '--training-threads', '2', '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.equal(report.task, 'regression');
  assert.equal(report.tolerance.mse_fraction, 2);
  assert.equal(report.training_threads, 2, 'auto would have used one thread for data this small');
});

test('bad input: one line on stderr, exit code 2, nothing written', async (t) => {
  const dir = await tempDir(t);
  const nanFile = join(dir, 'nan.csv');
  await writeFile(nanFile, 'a,b,label\n1,2,x\n3,NaN,y\n');
  const emptyFile = join(dir, 'empty.csv');
  await writeFile(emptyFile, 'a,b,label\n');
  const singleClass = join(dir, 'single.csv');
  await writeFile(singleClass, 'a,b,label\n1,2,x\n3,4,x\n');
  const textFile = join(dir, 'text.csv');
  await writeFile(textFile, 'a,b,label\n1,two,x\n3,4,y\n');
  const fewRows = join(dir, 'few.csv');
  await writeFile(fewRows, 'a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,1,x\n2,3,y\n');
  // A number label with a gap written NaN trained a third class "NaN"; one written NA on a
  // continuous label read as "100 classes over 100 rows".
  const nanLabel = join(dir, 'nan-label.csv');
  await writeFile(nanLabel, `a,b,label\n${Array.from({ length: 40 }, (_, i) => `${i},${i % 7},${i === 17 ? 'NaN' : i % 2}`).join('\n')}\n`);
  const naTarget = join(dir, 'na-target.csv');
  await writeFile(naTarget, `a,b,y\n${Array.from({ length: 100 }, (_, i) => `${i},${i % 7},${i === 50 ? 'NA' : (i * 1.37).toFixed(2)}`).join('\n')}\n`);
  const aFile = join(dir, 'plain-file');
  await writeFile(aFile, 'not a directory');
  const publicKeyFile = join(dir, 'keys', 'signing.pub');
  assert.equal((await runCli(['keys', 'generate', '--out', join(dir, 'keys')])).code, 0);
  const out = join(dir, 'out');
  const cases: [string, string[], RegExp][] = [
    ['missing file', ['--data', join(dir, 'missing.csv'), '--label', 'y', '--out', out], /missing\.csv: no such file/],
    ['missing label column', ['--data', IRIS, '--label', 'kind', '--out', out], /no label column "kind"/],
    ['NaN feature', ['--data', nanFile, '--label', 'label', '--out', out], /line 3, column "b": "NaN" is not a finite number/],
    ['non-numeric feature', ['--data', textFile, '--label', 'label', '--out', out], /column "b": "two"/],
    ['empty data', ['--data', emptyFile, '--label', 'label', '--out', out], /no data rows/],
    ['single class', ['--data', singleClass, '--label', 'label', '--out', out], /single class/],
    ['ε above 1', ['--data', IRIS, '--label', 'species', '--epsilon', '1.5', '--out', out], /--epsilon: .*outside \(0, 1\)/],
    [
      'a loss tolerance for a regression label',
      ['--data', shippedDatasetPath('diabetes'), '--label', 'progression', '--loss-tolerance', '7', '--out', out],
      /^fleetprune: --loss-tolerance: applies to classification only \(the validation cross-entropy\), and this data set is a regression one: its tolerance is --tolerance, in percent of the MSE\n$/,
    ],
    ['ε of 0', ['--data', IRIS, '--label', 'species', '--epsilon', '0', '--out', out], /--epsilon/],
    ['ε not a number', ['--data', IRIS, '--label', 'species', '--epsilon', 'abc', '--out', out], /--epsilon/],
    ['unwritable output', ['--data', IRIS, '--label', 'species', '--out', join(aFile, 'out')], /cannot write output directory/],
    ['non-empty non-artifact output', ['--data', IRIS, '--label', 'species', '--out', dir], /non-empty directory without manifest\.json/],
    ['negative L1', ['--data', IRIS, '--label', 'species', '--l1', '-0.1', '--out', out], /--l1: /],
    ['L1 input not a number', ['--data', IRIS, '--label', 'species', '--l1-input', 'lots', '--out', out], /--l1-input/],
    ['negative loss tolerance', ['--data', IRIS, '--label', 'species', '--loss-tolerance', '-1', '--out', out], /--loss-tolerance: /],
    ['bad task', ['--data', IRIS, '--label', 'species', '--task', 'ranking', '--out', out], /--task/],
    ['missing sign key', ['--data', IRIS, '--label', 'species', '--sign-key', join(dir, 'nokey'), '--out', out], /nokey/],
    ['public key as sign key', ['--data', IRIS, '--label', 'species', '--sign-key', publicKeyFile, '--out', out], /: is a public key; signing needs the private key \(signing\.key\)\n$/],
    ['ε of 0 in a list', ['--data', IRIS, '--label', 'species', '--epsilon', '0.1,0', '--out', out], /^fleetprune: --epsilon: must be above 0 \(and below 1 in the default relative mode\)\n$/],
    // It said "relative ε lies in (0, 1)" in absolute mode too.
    ['a negative absolute ε', ['--data', IRIS, '--label', 'species', '--epsilon-mode', 'absolute', '--epsilon', '-1', '--out', out], /^fleetprune: --epsilon: must be above 0 \(and below 1 in the default relative mode\)\n$/],
    ['ε given twice', ['--data', IRIS, '--label', 'species', '--epsilon', '0.5,0.3,0.5', '--out', out], /^fleetprune: --epsilon: ε 0\.5 is given twice\n$/],
    // A repeated --epsilon adds to the list: the first was dropped without a word, and this ran at 0.5 alone.
    ['ε given twice across --epsilon flags', ['--data', IRIS, '--label', 'species', '--units', '4', '--layers', '1', '--epochs', '1', '--epsilon', '0.3,0.5', '--epsilon', '0.5', '--out', out], /^fleetprune: --epsilon: ε 0\.5 is given twice\n$/],
    ['more ε than a sweep takes', ['--data', IRIS, '--label', 'species', '--epsilon', Array.from({ length: 51 }, (_, i) => (i + 1) / 100).join(','), '--out', out], /^fleetprune: --epsilon: at most 50 values to sweep\n$/],
    ['too few rows to split', ['--data', fewRows, '--label', 'label', '--out', out], /6 rows are too few to split .* would be empty/],
    ['empty name', ['--data', IRIS, '--label', 'species', '--name', '', '--out', out], /--name: must be 1-64 characters/],
    ['name with a slash', ['--data', IRIS, '--label', 'species', '--name', 'a/b', '--out', out], /--name: .*"a\/b"/],
    ['name the registry would refuse', ['--data', IRIS, '--label', 'species', '--name', '.hidden', '--out', out], /--name: .*not start with a dot/],
    ['hex epochs', ['--data', IRIS, '--label', 'species', '--epochs', '0x10', '--out', out], /--epochs.*not a decimal number/],
    ['three training threads', ['--data', IRIS, '--label', 'species', '--training-threads', '3', '--out', out], /^fleetprune: option '--training-threads <n>' argument '3' is invalid\. must be auto, 1 or 2 \(run with --help for usage\)\n$/],
    ['unknown option', ['--data', IRIS, '--label', 'species', '--epoch', '3', '--out', out], /^fleetprune: unknown option '--epoch' \(Did you mean --epochs\?\) \(run with --help for usage\)\n$/],
    ['missing --label', ['--data', IRIS, '--out', out], /^fleetprune: required option '--label <column>' not specified/],
    // In the words the other refusals use, not zod's "Too big: expected number to be <=16".
    ['17 layers', ['--data', IRIS, '--label', 'species', '--layers', '17', '--out', out], /^fleetprune: --layers: must be at most 16\n$/],
    ['one unit', ['--data', IRIS, '--label', 'species', '--units', '1', '--out', out], /^fleetprune: --units: must be at least 2\n$/],
    // Beyond any safe integer: the bound named was zod's 9007199254740991, not the flag's.
    ['units beyond any integer', ['--data', IRIS, '--label', 'species', '--units', '1e20', '--out', out], /^fleetprune: --units: must be at most 4096\n$/],
    ['seed beyond any integer', ['--data', IRIS, '--label', 'species', '--seed', '1e20', '--out', out], /^fleetprune: --seed: must be at most 2147483647\n$/],
    ['a number label with a NaN gap', ['--data', nanLabel, '--label', 'label', '--out', out], /^fleetprune: .*nan-label\.csv: line 19: the label "label" is missing \("NaN"\) where the other rows hold numbers: drop the rows without a label, or, if "NaN" is a class, give the task as classification \(--task classification, or "task": "classification" in a job request\)\n$/],
    ['a continuous label with an NA gap', ['--data', naTarget, '--label', 'y', '--out', out], /^fleetprune: .*na-target\.csv: line 52: the label "y" is missing \("NA"\)/],
    ['tolerance beyond 100 accuracy points', ['--data', IRIS, '--label', 'species', '--tolerance', '200', '--out', out], /^fleetprune: --tolerance: for classification, accuracy points from 0 to 100, not 200\n$/],
    ['tolerance beyond 1000% of the MSE', ['--data', shippedDatasetPath('diabetes'), '--label', 'progression', '--tolerance', '2000', '--out', out], /^fleetprune: --tolerance: for regression, a percentage of the MSE from 0 to 1000, not 2000\n$/],
    // An empty path (a shell variable left unset): the artifact was written unsigned, or into the working directory.
    ['empty --sign-key', ['--data', IRIS, '--label', 'species', '--units', '4', '--layers', '1', '--epochs', '1', '--epsilon', '0.5', '--sign-key', '', '--out', out], /^fleetprune: --sign-key: the path is empty\n$/],
    ['empty --out', ['--data', IRIS, '--label', 'species', '--out', ''], /^fleetprune: --out: the path is empty\n$/],
    // It failed with ENAMETOOLONG on its staging directory only once the models were trained.
    ['an --out name too long for the directories staged beside it', ['--data', IRIS, '--label', 'species', '--units', '4', '--layers', '1', '--epochs', '1', '--epsilon', '0.5', '--out', join(dir, 'm'.repeat(230))], /^fleetprune: --out: the name "m{40}…" is 230 bytes long; at most 208 leave room for the directories staged beside it\n$/],
    ['empty --data', ['--data', '', '--label', 'species', '--out', out], /^fleetprune: --data: the path is empty\n$/],
    ['a continuous label as classes', ['--data', shippedDatasetPath('diabetes'), '--label', 'bmi', '--task', 'classification', '--out', out], /the label has \d+ classes over 442 rows, \d+ of them with too few rows .*task regression/],
  ];
  const runs = await runCliBatch(cases.map(([, args]) => ({ args: ['prune', ...args] })));
  for (const [index, [name, , message]] of cases.entries()) {
    const run = runs[index]!;
    assert.equal(run.code, 2, `${name}: exit code (stderr: ${run.stderr})`);
    assert.match(run.stderr, message, name);
    assert.ok(isOneLineError(run.stderr), `${name}: one line, no stack: ${run.stderr}`);
  }
  await assert.rejects(readFile(join(out, 'manifest.json')), 'no artifact was written');
  await assert.rejects(stat(out), 'not even an empty output directory is left behind');
});

/** The uid and gid a root test runs the CLI as: permission bits do not stop root (CI runs as root). */
const NOBODY = { uid: 65534, gid: 65534 };

/** `fleetprune ...args` run as `user`, as runCli runs it otherwise. */
function runCliAs(user: { uid: number; gid: number }, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/fleetprune.js', ...args], { cwd: REPO_ROOT, env: { ...process.env, HOME: '/', FLEETPRUNE_LOG_LEVEL: 'silent' }, ...user }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

test('an output directory without write permission is refused up front', async (t) => {
  const dir = await tempDir(t);
  // As root, the CLI runs as nobody, who owns the directory: the user's own directory made read-only.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) await chown(dir, NOBODY.uid, NOBODY.gid);
  await chmod(dir, 0o500);
  // Before the directory is removed (a t.after hook would run after tempDir's removal).
  deferCleanup(t, () => chmod(dir, 0o700));
  const out = join(dir, 'out');
  const args = ['prune', '--data', IRIS, '--label', 'species', '--out', out];
  const run = asRoot ? await runCliAs(NOBODY, args) : await runCli(args);
  assert.equal(run.code, 2, run.stderr);
  // Up front: the output location is refused before the data is even read or a model trained.
  assert.equal(run.stderr, `fleetprune: --out: cannot write output directory ${out}: cannot create files in ${dir} (permission denied)\n`);
  assert.equal(run.stdout, '', 'nothing was trained');
  assert.deepEqual(await readdir(dir), [], 'nothing was left in the directory');
});

test('a bad environment variable is named in a one-line error', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'new', 'nested', 'out');
  const backend = await runCli(['prune', '--data', IRIS, '--label', 'species', '--out', out], { FLEETPRUNE_TF_BACKEND: 'gpu' });
  assert.equal(backend.code, 2);
  assert.match(backend.stderr, /^fleetprune: FLEETPRUNE_TF_BACKEND: must be one of/);
  const level = await runCli(['prune', '--data', IRIS, '--label', 'species', '--out', out], { FLEETPRUNE_LOG_LEVEL: 'loud' });
  assert.equal(level.code, 2);
  assert.match(level.stderr, /^fleetprune: FLEETPRUNE_LOG_LEVEL: must be one of/);
  assert.ok(isOneLineError(backend.stderr) && isOneLineError(level.stderr));
  assert.deepEqual(await readdir(dir), [], 'a run that failed leaves no directories for its --out behind');
  // A backend asked for by name that is not here is an error, not a silent fallback (tfjs-node cannot install on these machines).
  if (tfjsNodeInstalled()) return;
  // That check comes after the output location was checked: the check created nothing.
  const native = await runCli(['prune', '--data', IRIS, '--label', 'species', '--epsilon', '0.5', '--epochs', '2', '--out', out], { FLEETPRUNE_TF_BACKEND: 'tensorflow' });
  assert.equal(native.code, 2, native.stderr);
  assert.ok(isOneLineError(native.stderr), native.stderr);
  assert.match(native.stderr, /^fleetprune: FLEETPRUNE_TF_BACKEND=tensorflow: @tensorflow\/tfjs-node is not installed/);
  assert.deepEqual(await readdir(dir), [], 'no empty output directories are left behind');
});

test('prune with a signing key other users can read signs all the same, and warns that anyone who reads it can sign models devices trust', async (t) => {
  const dir = await tempDir(t);
  assert.equal((await runCli(['keys', 'generate', '--out', join(dir, 'keys')])).code, 0);
  const key = join(dir, 'keys', 'signing.key');
  await chmod(key, 0o644);
  const run = await runCli(['prune', '--data', IRIS, '--label', 'species', '--units', '4', '--layers', '1', '--epochs', '1', '--epsilon', '0.5', '--sign-key', key, '--out', join(dir, 'out')]);
  assert.equal(run.code, 0, run.stderr);
  assert.ok(run.stderr.includes(`warning: --sign-key ${key} can be read by other users (mode 0644): anyone who reads it can sign models your devices trust; chmod 600 it\n`), run.stderr);
});
