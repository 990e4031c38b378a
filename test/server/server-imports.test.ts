import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Whether importing `module` in a fresh node process loads TensorFlow.js (its engine is a global). */
async function loadsTfjs(module: string): Promise<boolean> {
  const script = `await import(${JSON.stringify(module)}); process.stdout.write(String(Boolean(globalThis._tfengine)));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT });
  return stdout === 'true';
}

test('the server and the agent do not load TensorFlow.js; only pruning does (in the job worker)', async () => {
  // TensorFlow.js costs ~0.5 s of start-up for every server process and CLI call that imports it.
  const [server, agent, pruning] = await Promise.all([
    loadsTfjs('./server/app/start-server.ts'),
    loadsTfjs('./agent/cli-command.ts'),
    loadsTfjs('./server/pruning/prune-to-artifacts.ts'),
  ]);
  assert.equal(server, false, 'server/app/start-server.ts loads TensorFlow.js');
  assert.equal(agent, false, 'agent/cli-command.ts loads TensorFlow.js');
  assert.equal(pruning, true, 'the check itself: the pruning code does load it');
});

/** The npm packages among `names` that importing `module` in a fresh node process loads. */
async function loadsPackages(module: string, names: readonly string[]): Promise<string[]> {
  const script = `await import(${JSON.stringify(module)}); const { default: Module } = await import('node:module');
const loaded = Object.keys(Module._cache);
process.stdout.write(JSON.stringify(${JSON.stringify(names)}.filter((name) => loaded.some((path) => path.includes('/node_modules/' + name + '/')))));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT });
  return JSON.parse(stdout) as string[];
}

test('a server on SQLite and its embedded broker does not load pg, mqtt or yaml (about 0.2 CPU-s of every start); the PostgreSQL engine and the external broker do', async () => {
  const [server, postgres, external] = await Promise.all([
    loadsPackages('./server/app/start-server.ts', ['pg', 'mqtt', 'yaml', 'express']),
    loadsPackages('./server/store/postgres-engine.ts', ['pg']),
    loadsPackages('./server/broker/external-broker.ts', ['mqtt']),
  ]);
  assert.deepEqual(server, ['express'], 'server/app/start-server.ts loads (of pg, mqtt, yaml and, as the check itself, express)');
  assert.deepEqual(postgres, ['pg']);
  assert.deepEqual(external, [], 'mqtt is loaded when the external broker starts, not when its module is imported');
});
