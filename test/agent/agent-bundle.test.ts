import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { buildAgentBundle, type AgentBundle } from '../../deploy/build/agent-bundle.ts';
import { FLEETPRUNE_VERSION } from '../../shared/cli/version.ts';
import { createAgentWorld, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { AgentProcess, predictVia } from './agent-process.ts';
import { REPO_ROOT } from '../helpers/cli.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';

let world: AgentWorld;
let dir: string;
let bundle: AgentBundle;
before(async () => {
  // A device's install: the bundle next to the production node_modules, and no sources.
  dir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-bundle-'));
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  bundle = await buildAgentBundle(join(dir, 'dist', 'fleetprune-agent.mjs'));
  world = await createAgentWorld();
});
after(async () => {
  await world?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the bundle with plain node (no tsx loader) from outside the repository's source tree. */
function runBundle(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bundle.outfile, ...args], { cwd: dir, env: { ...process.env, NODE_OPTIONS: '' } }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

test('the agent bundle holds the agent and shared code only: no server module, no TensorFlow.js, no TypeScript loader', async () => {
  assert.ok(bundle.sources.includes('agent/main.ts') && bundle.sources.includes('agent/agent.ts'), bundle.sources.join(', '));
  const outside = bundle.sources.filter((source) => !source.startsWith('agent/') && !source.startsWith('shared/'));
  assert.deepEqual(outside, [], 'only agent/ and shared/ sources');
  for (const heavy of ['@tensorflow/tfjs', 'tsx', 'esbuild', 'better-sqlite3', 'pg', 'aedes', '@grpc/grpc-js', 'onnx-proto']) {
    assert.ok(!bundle.packages.includes(heavy), `the bundle imports ${heavy}: ${bundle.packages.join(', ')}`);
  }
  assert.ok(bundle.packages.includes('onnxruntime-node') && bundle.packages.includes('mqtt'), bundle.packages.join(', '));
  const launcher = await readFile(bundle.outfile, 'utf8');
  assert.ok(launcher.startsWith('#!/usr/bin/env node\n'), 'runnable as a script');
  assert.match(launcher, /await import\("\.\/fleetprune-agent-core\.mjs"\)/, 'the launcher runs the bundle beside it');
  assert.doesNotMatch(launcher, /^import .* from ["'](?!node:)/m, 'the launcher imports no package statically (node\'s own modules only)');
  const code = await readFile(bundle.corefile, 'utf8');
  assert.doesNotMatch(code, /from ["'][^"']+\.ts["']/, 'no import of a .ts file is left');
});

test('beside the bundle, a package.json lists exactly the packages it imports, at the versions built with; without them installed the agent names them all in one line, exit code 2', async (t) => {
  assert.ok(bundle.packageJson.written, bundle.packageJson.reason);
  const manifest = JSON.parse(await readFile(join(dir, 'dist', 'package.json'), 'utf8'));
  assert.equal(manifest.name, 'fleetprune-agent');
  assert.deepEqual(Object.keys(manifest.dependencies), bundle.packages);
  for (const name of bundle.packages) {
    assert.equal(manifest.dependencies[name], JSON.parse(await readFile(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')).version, name);
  }
  assert.equal(await readFile(join(dir, 'dist', '.npmrc'), 'utf8'), 'onnxruntime-node-install=skip\n');
  // The root's allowScripts entry for onnxruntime-node's install step: npm warned about an install script no entry covered.
  assert.deepEqual(manifest.allowScripts, { 'onnxruntime-node': true });

  // Copied to a device alone, before its npm install.
  const device = await mkdtemp(join(tmpdir(), 'fleetprune-agent-bare-'));
  t.after(() => rm(device, { recursive: true, force: true }));
  for (const name of ['fleetprune-agent.mjs', 'fleetprune-agent-core.mjs', 'package.json']) await writeFile(join(device, name), await readFile(join(dir, 'dist', name)));
  const bare = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [join(device, 'fleetprune-agent.mjs'), '--help'], { cwd: device, env: { ...process.env, NODE_OPTIONS: '', NODE_PATH: '' } }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
    ),
  );
  assert.deepEqual([bare.code, bare.stdout], [2, '']);
  assert.equal(
    bare.stderr,
    `fleetprune-agent: npm packages it needs are not installed (${bundle.packages.join(', ')}): run \`npm install --omit=dev\` in ${device}/ ` +
      '(its package.json lists them), or run `npm ci --omit=dev` in the fleetprune checkout it was built in\n',
  );

  // A package.json of another project where --out points is left alone.
  const project = await mkdtemp(join(tmpdir(), 'fleetprune-agent-project-'));
  t.after(() => rm(project, { recursive: true, force: true }));
  await writeFile(join(project, 'package.json'), '{"name":"my-app"}\n');
  const other = await buildAgentBundle(join(project, 'agent.mjs'));
  assert.deepEqual(other.packageJson, { path: join(project, 'package.json'), written: false, reason: `${join(project, 'package.json')} is another project's (name "my-app"): not replaced` });
  assert.equal(await readFile(join(project, 'package.json'), 'utf8'), '{"name":"my-app"}\n');
  assert.equal(other.corefile, join(project, 'agent-core.mjs'));

  // An .npmrc already where --out points (registry settings, a token) is kept, the line added; bin names the launcher written.
  const elsewhere = await mkdtemp(join(tmpdir(), 'fleetprune-agent-npmrc-'));
  t.after(() => rm(elsewhere, { recursive: true, force: true }));
  await writeFile(join(elsewhere, '.npmrc'), '//registry.example/:_authToken=secret');
  const renamed = await buildAgentBundle(join(elsewhere, 'agent.mjs'));
  assert.ok(renamed.packageJson.written);
  assert.equal(await readFile(join(elsewhere, '.npmrc'), 'utf8'), '//registry.example/:_authToken=secret\nonnxruntime-node-install=skip\n');
  assert.deepEqual(JSON.parse(await readFile(join(elsewhere, 'package.json'), 'utf8')).bin, { 'fleetprune-agent': 'agent.mjs' });
  await buildAgentBundle(join(elsewhere, 'agent.mjs'));
  assert.equal(await readFile(join(elsewhere, '.npmrc'), 'utf8'), '//registry.example/:_authToken=secret\nonnxruntime-node-install=skip\n', 'added once');
});

test('the bundled agent answers --version and --help, and bad flags get one line and exit code 2', async () => {
  const packageVersion = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')).version;
  assert.equal(FLEETPRUNE_VERSION, packageVersion, 'shared/cli/version.ts follows package.json');
  const version = await runBundle(['--version']);
  assert.deepEqual([version.code, version.stdout.trim()], [0, packageVersion]);
  const help = await runBundle(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: fleetprune-agent \[options\]/);
  assert.match(help.stdout, /--holdout <file\.csv>/);

  const missing = await runBundle(['--data-dir', join(dir, 'unused')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /required option '--config <file>' not specified/);
  const noConfig = await runBundle(['--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'unused')]);
  assert.equal(noConfig.code, 2);
  assert.equal(noConfig.stderr.trim().split('\n').length, 1, noConfig.stderr);
  assert.match(noConfig.stderr, /^fleetprune-agent: cannot read agent config .*nope\.json/);
  for (const heartbeat of ['0.001', '1e10']) {
    const badHeartbeat = await runBundle(['--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'unused'), '--heartbeat-seconds', heartbeat]);
    assert.equal(badHeartbeat.code, 2);
    assert.equal(badHeartbeat.stderr, 'fleetprune-agent: --heartbeat-seconds: must be between 1 and 86400\n');
  }
  for (const [flag, value, message] of [
    ['--download-idle-seconds', '0', '--download-idle-seconds: must be between 1 and 3600'],
    ['--download-min-rate', '-1', '--download-min-rate: must be between 0 and 1000000000 bytes per second (0 = no minimum)'],
    ['--download-min-rate', '1e12', '--download-min-rate: must be between 0 and 1000000000 bytes per second (0 = no minimum)'],
  ]) {
    const bad = await runBundle(['--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'unused'), flag!, value!]);
    assert.deepEqual([bad.code, bad.stderr], [2, `fleetprune-agent: ${message}\n`]);
  }
  const emptyDir = await runBundle(['--config', join(dir, 'nope.json'), '--data-dir', '']);
  assert.deepEqual([emptyDir.code, emptyDir.stderr], [2, 'fleetprune-agent: --data-dir: empty (was the variable it was given from unset?); give a path\n']);
  const badPort = await runBundle(['--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'unused'), '--http-port', 'eighty']);
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /--http-port/);
});

test('the bundled agent runs a device end to end: activates v1, serves it, benchmarks a candidate and reports', async (t) => {
  const config = await world.config('bundled-device');
  const configPath = await AgentProcess.writeConfig(dir, config);
  const agent = AgentProcess.spawn(
    ['--config', configPath, '--data-dir', join(dir, 'device-data'), '--holdout', world.holdoutPath, '--label', 'kind', '--bench-samples', '50', '--bench-batches', '5'],
    { FLEETPRUNE_LOG_LEVEL: 'warn' },
    bundle.outfile,
  );
  t.after(() => agent.stop());
  const { port, active } = await agent.ready();
  assert.equal(active, 'none');
  await waitFor(() => world.harness.ingest.statuses.get('bundled-device')?.online === true, 10_000, 'the device online');

  const activation = await world.assign('bundled-device', world.v1, 'active');
  await world.waitForReport(isOutcome(activation.id, 'activated'), 30_000);
  const served = await predictVia(port, [[1, 2, 3, 4, 5, 6, 7]]);
  assert.equal(served.status, 200, JSON.stringify(served.json));
  assert.equal(served.json.sha256, world.v1.id);

  await world.assign('bundled-device', world.v2, 'candidate');
  const report = await world.waitForReport(isBenchmarkFor(world.v2.id, 'bundled-device'), 60_000);
  assert.equal(report.kind, 'benchmark');
  if (report.kind === 'benchmark') assert.equal(report.active?.sha256, world.v1.id, 'benchmarked side by side with the active model');

  await agent.stop();
  const { code, signal } = await agent.exited;
  assert.ok(code === 0 || signal === 'SIGTERM', `clean exit on SIGTERM (code ${code}, signal ${signal})`);
  await waitFor(() => world.harness.ingest.statuses.get('bundled-device')?.online === false, 10_000, 'the device offline after shutdown');
});

test('the bundled agent exits with one line and code 2 when its HTTP port is taken, instead of hanging on its MQTT link', async (t) => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => blocker.close(resolve)));
  const taken = (blocker.address() as AddressInfo).port;
  const config = await world.config('port-taken');
  const configPath = await AgentProcess.writeConfig(await mkdtemp(join(dir, 'port-taken-')), config);
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'port-taken-data'), '--http-port', String(taken)], { FLEETPRUNE_LOG_LEVEL: 'silent' }, bundle.outfile);
  t.after(() => agent.kill9());
  // An unref'd timer: once the agent has exited it must not hold this file's test process open.
  const exit = await Promise.race([agent.exited, delay(15_000, 'hung' as const, { ref: false })]);
  assert.notEqual(exit, 'hung', 'the agent still runs 15 s after the listen error');
  assert.deepEqual(exit, { code: 2, signal: null });
  assert.equal(agent.stderr.trim().split('\n').length, 1, agent.stderr);
  assert.match(agent.stderr.trim(), new RegExp(`^fleetprune-agent: --http-port: cannot listen on 127\\.0\\.0\\.1:${taken} \\(listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${taken}\\)$`));
});

test('a data dir the agent cannot use (a directory where a file belongs, a file where a directory belongs) is one line naming it, code 2', async (t) => {
  const config = await world.config('broken-data-dir');
  const configPath = await AgentProcess.writeConfig(await mkdtemp(join(dir, 'broken-data-dir-')), config);
  for (const [entry, make, failure] of [
    ['state.json', 'dir', /: \S*\/state\.json is a directory where the agent keeps a file \(EISDIR\); remove it or choose another --data-dir$/],
    ['outbox', 'file', /: \S*\/outbox is a file where the agent keeps a directory \(EEXIST\); remove it or choose another --data-dir$/],
    ['models', 'file', /: \S*\/models is a file where the agent keeps a directory \(EEXIST\); remove it or choose another --data-dir$/],
  ] as const) {
    const dataDir = await mkdtemp(join(dir, 'broken-data-'));
    if (make === 'dir') await mkdir(join(dataDir, entry));
    else await writeFile(join(dataDir, entry), 'not a directory');
    const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', dataDir, '--http-port', '0'], { FLEETPRUNE_LOG_LEVEL: 'silent' }, bundle.outfile);
    t.after(() => agent.kill9());
    const exit = await Promise.race([agent.exited, delay(15_000, 'hung' as const, { ref: false })]);
    assert.notEqual(exit, 'hung', `${entry}: the agent still runs 15 s later`);
    assert.deepEqual(exit, { code: 2, signal: null }, `${entry}: ${agent.stderr}`);
    const lines = agent.stderr.trim().split('\n');
    assert.equal(lines.length, 1, agent.stderr);
    assert.ok(lines[0]!.startsWith(`fleetprune-agent: cannot use the data dir ${dataDir}: `), lines[0]);
    assert.match(lines[0]!, failure);
    assert.doesNotMatch(lines[0]!, /internal error|    at /);
  }
});

test('the bundled agent with refused broker credentials says so at error level and keeps retrying', async (t) => {
  const config = await world.config('wrong-password');
  const configPath = await AgentProcess.writeConfig(await mkdtemp(join(dir, 'wrong-password-')), { ...config, broker: { ...config.broker, password: 'not-the-password' } });
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'wrong-password-data')], { FLEETPRUNE_LOG_LEVEL: 'warn' }, bundle.outfile);
  t.after(() => agent.stop());
  await agent.ready();
  const message = "the broker refused this device's credentials (revoked, or enrolled again elsewhere?); retrying";
  await agent.waitForLog(message, 15_000);
  const line = JSON.parse(agent.stderr.split('\n').find((entry) => entry.includes(message))!);
  assert.equal(line.level, 50, 'logged at error level');
  assert.equal(world.harness.ingest.statuses.get('wrong-password')?.online ?? false, false);
  assert.equal(agent.pid > 0 && (await Promise.race([agent.exited.then(() => 'exited'), new Promise((resolve) => setTimeout(() => resolve('running'), 4000))])), 'running');
  // It retried meanwhile (after about 1 s, then 2 s), refused each time: said once, not once a retry.
  assert.equal(agent.stderr.split('\n').filter((entry) => entry.includes('refused this device')).length, 1, agent.stderr);
});

test('--download-idle-seconds reaches the downloader: a server that stalls longer is cut off and the download retried', async (t) => {
  const config = await world.config('slow-link');
  const configPath = await AgentProcess.writeConfig(await mkdtemp(join(dir, 'slow-link-')), config);
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'slow-link-data'), '--download-idle-seconds', '1'], { FLEETPRUNE_LOG_LEVEL: 'warn' }, bundle.outfile);
  t.after(() => agent.stop());
  await agent.ready();
  world.http.throttle = { chunkBytes: 16 * 1024, delayMs: 2500 };
  t.after(() => (world.http.throttle = undefined));
  await world.assign('slow-link', world.big, 'candidate');
  await agent.waitForLog('model download failed; retrying', 20_000);
  assert.match(agent.stderr, /no data for 1 s/);
});
