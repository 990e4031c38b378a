import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { REPO_ROOT, tempDir } from '../helpers/cli.ts';

// `npm test` runs the compiled tree (test/runner/test-tree.mjs). These tests run the repository's
// own TypeScript, as `npm start` and an installed `fleetprune` do: through tsx, with no compiled files.
const SOURCE_ROOT = dirname(realpathSync(join(REPO_ROOT, 'package.json')));
const run = promisify(execFile);

test('the source tree holds no compiled JavaScript (the launcher and workers would load it instead of the TypeScript)', () => {
  for (const compiled of ['server/cli/main.js', 'server/jobs/prune-worker.js', 'server/jobs/job-data-check-worker.js', 'server/artifacts/model-check-process.js']) {
    assert.equal(existsSync(join(SOURCE_ROOT, compiled)), false, compiled);
  }
});

test('bin/fleetprune.js runs the TypeScript source through tsx', async (t) => {
  const dir = await tempDir(t);
  const { stdout } = await run(process.execPath, [join(SOURCE_ROOT, 'bin/fleetprune.js'), 'keys', 'generate', '--out', join(dir, 'keys')], { cwd: dir, env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' } });
  assert.match(stdout, /^private key: .*signing\.key\n/);
  assert.deepEqual((await readdir(join(dir, 'keys'))).sort(), ['signing.key', 'signing.pub']);
});

test("bin/fleetprune.js runs whatever the working directory's tsconfig says and with a TMPDIR it cannot write to (tsx's cache)", async (t) => {
  const dir = await tempDir(t);
  // A user's project: its tsconfig maps bare imports to its own node_modules, whose commander lacks what fleetprune imports.
  await mkdir(join(dir, 'node_modules', 'commander'), { recursive: true });
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { baseUrl: '.', paths: { '*': ['node_modules/*'] } } }));
  await writeFile(join(dir, 'node_modules', 'commander', 'package.json'), JSON.stringify({ name: 'commander', version: '1.0.0', type: 'module', main: 'index.js' }));
  await writeFile(join(dir, 'node_modules', 'commander', 'index.js'), 'export const Command = 1;\n');
  const notADirectory = join(dir, 'a-file');
  await writeFile(notADirectory, '');
  for (const env of [{}, { TMPDIR: notADirectory }]) {
    const { stdout, stderr } = await run(process.execPath, [join(SOURCE_ROOT, 'bin/fleetprune.js'), '--version'], { cwd: dir, env: { ...process.env, ...env } });
    assert.match(stdout, /^0\.\d+\.\d+ \(database migrations: /, `${JSON.stringify(env)}: ${stderr}`);
  }
});

test("a worker thread reads fleetprune's own tsconfig, not the working directory's (whose paths broke its imports)", async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'node_modules', 'csv-parse'), { recursive: true });
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { baseUrl: '.', paths: { '*': ['node_modules/*'] } } }));
  await writeFile(join(dir, 'node_modules', 'csv-parse', 'package.json'), JSON.stringify({ name: 'csv-parse', version: '1.0.0', type: 'module', exports: { './sync': './sync.js' } }));
  await writeFile(join(dir, 'node_modules', 'csv-parse', 'sync.js'), 'export const nothing = 1;\n');
  const script = `
    const { register } = await import(${JSON.stringify(pathToFileURL(join(SOURCE_ROOT, 'node_modules/tsx/dist/esm/api/index.mjs')).href)});
    register({ tsconfig: ${JSON.stringify(join(SOURCE_ROOT, 'tsconfig.json'))} });
    const { JobDataCheckPool } = await import(${JSON.stringify(join(SOURCE_ROOT, 'server/jobs/job-data-check-pool.ts'))});
    const pool = new JobDataCheckPool({ threads: 1 });
    const check = await pool.check({ csvText: 'a,b,y\\n' + Array.from({ length: 40 }, (_, i) => i + ',' + (i % 7) + ',' + (i % 2 ? 'p' : 'q')).join('\\n'), source: 'inline', label: 'y', options: undefined, optionsField: 'options' });
    await pool.stop();
    process.stdout.write(check.task);`;
  const scriptPath = join(dir, 'check.mjs');
  await writeFile(scriptPath, script);
  const { stdout } = await run(process.execPath, [scriptPath], { cwd: dir });
  assert.equal(stdout, 'classification');
});

test("a worker thread started from the source tree loads its TypeScript module through tsx (the data-check and prune workers' entry)", async () => {
  const script = `
    import { JobDataCheckPool } from './server/jobs/job-data-check-pool.ts';
    const pool = new JobDataCheckPool({ threads: 1 });
    const check = await pool.check({ csvText: 'a,b,y\\n' + Array.from({ length: 40 }, (_, i) => i + ',' + (i % 7) + ',' + (i % 2 ? 'p' : 'q')).join('\\n'), source: 'inline', label: 'y', options: undefined, optionsField: 'options' });
    await pool.stop();
    process.stdout.write(check.task);`;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: SOURCE_ROOT });
  assert.equal(stdout, 'classification');
});

test("the model check's child process started from the source tree loads its TypeScript module through tsx", async () => {
  const script = `
    import { ModelCheckRunner } from './server/artifacts/model-check-runner.ts';
    const runner = new ModelCheckRunner({ timeoutMs: 30_000, idleMs: 100 });
    const problem = await runner.check({ bytes: new TextEncoder().encode('not onnx'), manifest: { features: ['a'], task: 'regression' } });
    runner.stop();
    process.stdout.write(problem);`;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: SOURCE_ROOT });
  assert.match(stdout, /^model\.onnx does not load in onnxruntime \(/);
});

test("npm test's groups hold every test file once; files with top-level hooks, and those listed to run alone, run alone", async () => {
  // @ts-expect-error: a plain .mjs module of the runner, without types.
  const { groupTestFiles, GROUP_SIZE } = (await import('./test-groups.mjs')) as { groupTestFiles: (root: string, files: string[]) => Promise<{ alone: string[]; groups: string[][] }>; GROUP_SIZE: number };
  const files = (await readdir(join(SOURCE_ROOT, 'test'), { recursive: true })).filter((file) => file.endsWith('.test.ts')).map((file) => `test/${file}`);
  const { alone, groups } = await groupTestFiles(SOURCE_ROOT, files);
  assert.deepEqual([...alone, ...groups.flat()].sort(), [...files].sort(), 'each file once');
  assert.ok(GROUP_SIZE >= 2, `${GROUP_SIZE} files a group`);
  assert.ok(groups.every((group) => group.length >= 1 && group.length <= GROUP_SIZE && group.every((file) => dirname(file) === dirname(group[0]!))), `groups of up to ${GROUP_SIZE} files of one folder`);
  assert.ok(groups.length < files.length / 2, `${groups.length} groups for ${files.length} files`);
  for (const file of ['test/artifact/tamper.test.ts', 'test/broker/embedded-packet-size.test.ts', 'test/dashboard/demo-and-dashboard.test.ts']) assert.ok(alone.includes(file), file);
  assert.ok(!alone.includes('test/server/jobs.test.ts'), 'a file without hooks is grouped');
  // An agent file whose only hooks make and close its own world is grouped; one whose before() does more runs alone.
  assert.ok(!alone.includes('test/agent/answer-metrics.test.ts'), 'an agent file with only its own world is grouped');
  assert.ok(alone.includes('test/agent/trusted-signer.test.ts'), 'an agent file whose before() does more than make its world runs alone');
});

test("npm test starts its longest processes first: node --test runs files in the order of their names, and the group files' names give that order", async (t) => {
  // @ts-expect-error: a plain .mjs module of the runner, without types.
  const runner = (await import('./test-groups.mjs')) as {
    groupTestFiles: (root: string, files: string[]) => Promise<{ alone: string[]; groups: string[][] }>;
    writeGroupFiles: (tree: string, grouped: { alone: string[]; groups: string[][] }) => Promise<string[]>;
    estimatedSeconds: (files: string[]) => number;
  };
  const files = (await readdir(join(SOURCE_ROOT, 'test'), { recursive: true })).filter((file) => file.endsWith('.test.ts')).map((file) => `test/${file}`);
  const grouped = await runner.groupTestFiles(SOURCE_ROOT, files);
  const tree = await tempDir(t);
  const paths = await runner.writeGroupFiles(tree, grouped);
  assert.equal(paths.length, grouped.alone.length + grouped.groups.length, 'one file per process');
  assert.deepEqual([...paths].sort(), paths, 'the names sort in the order the processes should start');
  // Each process file imports its test files; read them back to see what each runs.
  const imported = await Promise.all(
    paths.map(async (path) => [...(await readFile(join(tree, path), 'utf8')).matchAll(/import\("\.\/\.\.\/(.+?)\.js"\)/g)].map((match) => `test/${match[1]}.ts`)),
  );
  assert.deepEqual(imported.flat().sort(), [...files].sort(), 'every test file once');
  for (const path of paths) {
    const first = /import\("(.+?)"\)/.exec(await readFile(join(tree, path), 'utf8'))?.[1];
    assert.equal(first, './../runner/process-watchdog.mjs', `${path} loads the watchdog (process-watchdog.mjs) before its tests`);
  }
  const seconds = imported.map((group) => runner.estimatedSeconds(group));
  assert.ok(seconds.every((value, i) => i === 0 || value <= seconds[i - 1]!), `longest first: ${seconds.join(' ')}`);
  assert.ok(imported.every((group, i) => group.length === 1 || seconds[i]! <= 60), 'no group of files holds more than a minute of tests');
});
