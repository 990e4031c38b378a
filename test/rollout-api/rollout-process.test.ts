import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStore, type StoreLocation } from '../../server/store/open-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';
import { registerVersion, stagedSpecYaml } from './helpers/rollout-fixtures.ts';
import { waitForRollout } from './helpers/rollout-server.ts';
import { nodeArgsFor } from '../helpers/cli.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Proc {
  child: ChildProcess;
  baseUrl: string;
  request(method: string, path: string, options?: { body?: string; contentType?: string }): Promise<Response>;
  kill(): Promise<void>;
}

async function prepare(t: TestContext, engine: 'sqlite' | 'postgres'): Promise<{ dataDir: string; location: StoreLocation; journal: string } | null> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-rollout-proc-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const location = await freshStoreLocation(t, engine, dataDir);
  if (!location) return null;
  const store = await openStore(location);
  await registerVersion(store, 'wine', '1');
  await registerVersion(store, 'wine', '2');
  await store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
  await store.close();
  return { dataDir, location, journal: join(dataDir, 'fleet-journal.jsonl') };
}

interface PreparedProc {
  /** Starts the server (opens the store, binds the listeners) in the process already loaded. */
  start(): Promise<Proc>;
}

/**
 * Spawns a server process and waits until it has loaded (Node, tsx and every module: seconds on
 * a loaded machine) without starting the server yet: `start()` then costs the server's start only.
 */
function prepareFleetServer(t: TestContext, env: { dataDir: string; location: StoreLocation; journal: string }, nodeId?: string): Promise<PreparedProc> {
  const config = {
    dataDir: env.dataDir,
    host: '127.0.0.1',
    httpPort: 0,
    grpcPort: 0,
    mqttPort: 0,
    adminToken: ADMIN_TOKEN,
    ...(env.location.engine === 'postgres' ? { databaseUrl: env.location.databaseUrl, databaseSchema: env.location.schema } : {}),
    // Servers running at once on one database need a node id each (the default, the host name, is in use by the first).
    ...(nodeId ? { nodeId } : {}),
  };
  const child = spawn(process.execPath, nodeArgsFor('test/rollout-api/helpers/fleet-server-main.ts'), {
    cwd: REPO,
    env: { ...process.env, FP_TEST_CONFIG: JSON.stringify(config), FP_TEST_JOURNAL: env.journal, FP_TEST_START_ON_STDIN: '1', FLEETPRUNE_LOG_LEVEL: 'warn' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdin!.on('error', () => {}); // a process that died early: its exit says why
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  // Resolves with the first match of `pattern` on stdout; rejects if the process exits first or after `ms`.
  const output = (pattern: RegExp, what: string, ms: number) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        child.off('exit', exited);
      };
      const check = () => {
        const match = pattern.exec(stdout);
        if (match) (done(), resolve(match));
      };
      const exited = (code: number | null) => (done(), reject(new Error(`server exited with ${code} before it ${what}: ${stderr}`)));
      const timer = setTimeout(() => (done(), reject(new Error(`server not ${what} within ${ms / 1000} s: ${stderr}`))), ms);
      child.stdout!.on('data', check);
      child.on('exit', exited);
      check();
    });
  return output(/^ready$/m, 'loaded', 60_000).then(() => ({
    start: async () => {
      child.stdin!.end('start\n');
      const match = await output(/^listening http=(\d+)/m, 'started', 30_000);
      const baseUrl = `http://127.0.0.1:${match[1]}`;
      return {
        child,
        baseUrl,
        request: (method, path, { body, contentType } = {}) =>
          fetch(`${baseUrl}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': contentType ?? 'application/yaml' } : {}) }, body }),
        kill: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGKILL');
          }),
      };
    },
  }));
}

test('a real server drives a rollout end to end; kill -9 mid-rollout, restart resumes where it stopped, no step twice', async (t) => {
  const env = await prepare(t, 'sqlite');
  if (!env) return;
  // The process that restarts the server is loaded ahead, while the first one runs: the kill -9
  // below falls within a 10 s pause, and the restart must come before the pause ends for the state
  // to be seen unchanged, which a cold start of Node and tsx on a loaded machine may not.
  const [first, restart] = await Promise.all([prepareFleetServer(t, env), prepareFleetServer(t, env)]);
  let server = await first.start();
  const response = await server.request('POST', '/api/rollouts', { body: stagedSpecYaml({ pause: '10s' }) });
  assert.equal(response.status, 201, await response.clone().text());
  const { id } = (await response.json()) as { id: string };

  // Killed during the timed pause (step 2), after the 50 % assignment and the analysis. The pause
  // must outlast the restart (the server's start in the process loaded ahead) for the state to be seen unchanged.
  const before = await waitForRollout(server.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 2);
  await server.kill();

  server = await restart.start();
  const after = (await (await server.request('GET', `/api/rollouts/${id}`)).json()) as any;
  assert.equal(after.stepIndex, before.stepIndex);
  assert.equal(after.phase, 'Paused');
  assert.equal(after.pause.until, before.pause.until, 'the pause ends when it would have');
  // The decision log says which server drove the rollout from the restart on.
  const takeovers = after.decisions.filter((d: any) => d.kind === 'takeover');
  assert.deepEqual(takeovers.map((d: any) => [d.verdict, d.stepIndex]), [['driven', 2]]);
  assert.match(takeovers[0].message, /^server node \S+ took over the rollout at \S+Z \(a restart, a new leader, or this server leading again after it lost the lead\) in phase Paused$/);
  const done = await waitForRollout(server.request, id, (v) => v.phase === 'Completed' && v.pendingActions.length === 0, 30_000);
  assert.equal(done.weight, 100);
  assert.equal(done.outcome.status, 'production');

  // Every step started once; every command reached the fleet once; each device changed once per command.
  const started = done.decisions.filter((d: any) => d.kind === 'step' && d.verdict === 'started').map((d: any) => d.stepIndex);
  assert.deepEqual(started, [0, 1, 2, 3]);
  const completed = done.decisions.filter((d: any) => d.kind === 'step' && d.verdict === 'completed').map((d: any) => d.stepIndex);
  assert.deepEqual(completed, [0, 1, 2, 3]);
  const journal = (await readFile(env.journal, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line));
  const calls = journal.filter((entry) => entry.call).map((entry) => entry.call);
  assert.deepEqual(calls, [...new Set(calls)], `a command was sent twice: ${calls.join(', ')}`);
  const applied = journal.filter((entry) => entry.applied).map((entry) => entry.applied);
  assert.deepEqual(applied, [...new Set(applied)]);
  assert.equal(journal.filter((entry) => entry.effect === 'active:2').length, 4);

  const store = await openStore(env.location);
  t.after(() => store.close());
  const executed = await new StoreRolloutRepository(store.engine).executedActions(id);
  assert.deepEqual(executed, [...new Set(executed)]);
  assert.ok(calls.every((call) => executed.includes(call)), 'every fleet command is recorded as executed');
  await server.kill();
});

test('PostgreSQL: two servers, one leader; kill -9 the leader and the other takes over within 10 s', async (t) => {
  const env = await prepare(t, 'postgres');
  if (!env) return;
  const [preparedFirst, preparedSecond] = await Promise.all([prepareFleetServer(t, env, 'node-first'), prepareFleetServer(t, env, 'node-second')]);
  const first = await preparedFirst.start();
  const second = await preparedSecond.start();
  const leaderOf = async (server: Proc) => (await (await server.request('GET', '/api/rollouts/leader')).json()) as any;
  const [a, b] = [await leaderOf(first), await leaderOf(second)];
  assert.equal(a.isLeader, true);
  assert.equal(b.isLeader, false);
  assert.equal(b.leader, a.instance, 'the follower names the leader');

  // Commands on the follower are refused with the leader's name; reads work anywhere.
  const refused = await second.request('POST', '/api/rollouts', { body: stagedSpecYaml() });
  assert.equal(refused.status, 503);
  assert.match(((await refused.json()) as any).error.message, new RegExp(`not the rollout leader; send rollout commands to the leader, .*instance ${a.instance};`));
  const started = await first.request('POST', '/api/rollouts', { body: stagedSpecYaml() });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(second.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 2);

  await first.kill();
  const killedAt = Date.now();
  let status = await leaderOf(second);
  while (!status.isLeader && Date.now() - killedAt < 10_000) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    status = await leaderOf(second);
  }
  assert.equal(status.isLeader, true, 'the follower took over within 10 s');

  // The new leader says so in the rollout's decision log, and drives the rollout it inherited.
  const inherited = await waitForRollout(second.request, id, (v) => v.decisions.some((d: any) => d.kind === 'takeover'));
  assert.deepEqual(
    inherited.decisions.filter((d: any) => d.kind === 'takeover').map((d: any) => d.message.split(' at ')[0]),
    ['server node node-second took over the rollout'],
  );
  const resumed = await second.request('POST', `/api/rollouts/${id}/resume`);
  assert.equal(resumed.status, 200, await resumed.clone().text());
  await waitForRollout(second.request, id, (v) => v.phase === 'Completed');
  await second.kill();
});
