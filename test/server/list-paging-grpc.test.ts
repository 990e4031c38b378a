import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ReducerHarness, STAGED_STEPS, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { runCliBatch } from '../helpers/cli.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { runCli } from './helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { finishedJob } from './helpers/job-records.ts';

const ROLLOUTS = 7;
const JOBS = 5;


test('ListRollouts and ListJobs page with offset/limit and answer total and more as GET /api/rollouts and /api/jobs do; the CLI pages with --offset', async (t) => {
  const server = (await startTestServer(t))!;
  // Finished rollouts (nothing drives them), written straight to the store: even ones wine, odd ones beer.
  const repository = new StoreRolloutRepository(server.server.ctx.store.engine);
  const h = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(2), '1', 'ro-page-0');
  const finished = { ...h.state, phase: 'Aborted' as const, devices: h.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const })) };
  for (let n = 0; n < ROLLOUTS; n++) {
    await repository.create({ state: { ...finished, id: `ro-page-${n}`, spec: { ...finished.spec, model: n % 2 === 0 ? 'wine' : 'beer' } }, pendingActions: [], decisions: [] });
  }
  for (let n = 0; n < JOBS; n++) await server.server.ctx.store.jobs.insert(finishedJob('job-page', n));
  const rollouts = grpcClient(server.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => (rollouts.close(), jobs.close()));
  const rest = async (path: string) => {
    const response = await server.request('GET', path);
    assert.equal(response.status, 200, path);
    return (await response.json()) as any;
  };

  await t.test('ListRollouts answers the page, total and more GET /api/rollouts answers', async () => {
    const pages: [{ model?: string; limit?: number; offset?: number; containing?: string }, string[], number, boolean][] = [
      [{}, ['ro-page-6', 'ro-page-5', 'ro-page-4', 'ro-page-3', 'ro-page-2', 'ro-page-1', 'ro-page-0'], 7, false],
      [{ limit: 3 }, ['ro-page-6', 'ro-page-5', 'ro-page-4'], 7, true],
      [{ limit: 3, offset: 3 }, ['ro-page-3', 'ro-page-2', 'ro-page-1'], 7, true],
      [{ limit: 3, offset: 6 }, ['ro-page-0'], 7, false],
      [{ offset: 100 }, [], 7, false],
      [{ model: 'wine', limit: 2, offset: 1 }, ['ro-page-4', 'ro-page-2'], 4, true],
      [{ model: 'beer', offset: 2 }, ['ro-page-1'], 3, false],
      // The page that holds a rollout: its offset is the rollout's place rounded down to a whole page.
      [{ limit: 3, containing: 'ro-page-2' }, ['ro-page-3', 'ro-page-2', 'ro-page-1'], 7, true],
      [{ limit: 3, containing: 'ro-page-6' }, ['ro-page-6', 'ro-page-5', 'ro-page-4'], 7, true],
      [{ model: 'wine', limit: 3, containing: 'ro-page-0' }, ['ro-page-0'], 4, false],
    ];
    for (const [query, ids, total, more] of pages) {
      const label = JSON.stringify(query);
      const offset = query.containing ? (await rest(`/api/rollouts?${new URLSearchParams(Object.entries(query).map(([key, value]) => [key, String(value)]))}`)).offset : (query.offset ?? 0);
      const grpcPage = await rollouts.call('ListRollouts', query);
      assert.deepEqual([grpcPage.rollouts.map((r: any) => r.id), grpcPage.total, grpcPage.more, grpcPage.offset], [ids, total, more, offset], `gRPC ${label}`);
      const search = new URLSearchParams(Object.entries(query).map(([key, value]) => [key, String(value)]));
      const restPage = await rest(`/api/rollouts?${search}`);
      assert.deepEqual([restPage.rollouts.map((r: any) => r.id), restPage.total, restPage.more, restPage.offset], [ids, total, more, offset], `REST ${label}`);
    }
    assert.deepEqual((await rollouts.call('ListRollouts', { limit: 3, containing: 'ro-page-2' })).offset, 3);
    // No such rollout (of the model): NOT_FOUND saying so.
    for (const [request, message] of [
      [{ containing: 'nope' }, 'no rollout nope'],
      [{ containing: 'ro-page-1', model: 'wine' }, 'rollout ro-page-1 is of model beer, not wine'],
    ] as const) {
      await assert.rejects(rollouts.call('ListRollouts', request), (error: any) => (assert.deepEqual([error.code, error.details], [status.NOT_FOUND, message]), true));
    }
  });

  await t.test('ListJobs answers the page, total and more GET /api/jobs answers', async () => {
    const pages: [{ limit?: number; offset?: number }, number[], boolean][] = [
      [{}, [4, 3, 2, 1, 0], false],
      [{ limit: 2 }, [4, 3], true],
      [{ limit: 2, offset: 2 }, [2, 1], true],
      [{ limit: 2, offset: 4 }, [0], false],
      [{ offset: 5 }, [], false],
    ];
    for (const [query, numbers, more] of pages) {
      const label = JSON.stringify(query);
      const ids = numbers.map((n) => `job-page-${n}`);
      const grpcPage = await jobs.call('ListJobs', query);
      assert.deepEqual([grpcPage.jobs.map((j: any) => j.id), grpcPage.total, grpcPage.more], [ids, JOBS, more], `gRPC ${label}`);
      const search = new URLSearchParams(Object.entries(query).map(([key, value]) => [key, String(value)]));
      const restPage = await rest(`/api/jobs?${search}`);
      assert.deepEqual([restPage.jobs.map((j: any) => j.id), restPage.total, restPage.more], [ids, JOBS, more], `REST ${label}`);
    }
  });

  await t.test('bad offsets, limits and model names are INVALID_ARGUMENT naming the field, in one line', async () => {
    for (const [client, method, request, field] of [
      [rollouts, 'ListRollouts', { offset: -1 }, 'offset'],
      [rollouts, 'ListRollouts', { offset: 1_000_000_001 }, 'offset'],
      [rollouts, 'ListRollouts', { limit: 1001 }, 'limit'],
      [rollouts, 'ListRollouts', { model: '../wine' }, 'model'],
      [rollouts, 'ListRollouts', { containing: 'a b' }, 'containing'],
      [rollouts, 'ListRollouts', { containing: 'ro-page-1', offset: 3 }, 'containing'],
      [jobs, 'ListJobs', { offset: -1 }, 'offset'],
      [jobs, 'ListJobs', { offset: 1_000_000_001 }, 'offset'],
      [jobs, 'ListJobs', { limit: 1001 }, 'limit'],
      [jobs, 'ListJobs', { limit: -1 }, 'limit'],
    ] as const) {
      const label = `${method} ${JSON.stringify(request)}`;
      await assert.rejects(client.call(method, request), (error: any) => {
        assert.equal(error.code, status.INVALID_ARGUMENT, `${label}: ${error.details}`);
        assert.match(error.details, new RegExp(`^${field}: [^\\n]+$`), label);
        // Every list call's limit in one wording, saying what 0 (proto3's unset) does.
        if (field === 'limit') assert.equal(error.details, 'limit: must be a whole number from 1 to 1000, or 0 (unset) for 100', label);
        return true;
      });
    }
  });

  await t.test('rollout list and jobs list take --offset, and say where the next page is', async () => {
    const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
    const [rolloutPage, rolloutLast, jobTable, jobJson, holding, both] = await Promise.all([
      runCli(['rollout', 'list', '--limit', '3', '--offset', '3', ...connection]),
      runCli(['rollout', 'list', '--model', 'wine', '--offset', '2', ...connection]),
      runCli(['jobs', 'list', '--limit', '2', '--offset', '1', ...connection]),
      runCli(['jobs', 'list', '--limit', '2', '--offset', '2', '--json', ...connection]),
      runCli(['rollout', 'list', '--limit', '3', '--containing', 'ro-page-2', ...connection]),
      runCli(['rollout', 'list', '--offset', '1', '--containing', 'ro-page-2', ...connection]),
    ]);
    // --containing: the page that holds the rollout, with the same pointer to the next one.
    assert.equal(holding.code, 0, holding.stderr);
    assert.deepEqual(holding.stdout.trim().split('\n').map((line) => line.split(' ')[0]), ['ro-page-3', 'ro-page-2', 'ro-page-1']);
    assert.equal(holding.stderr, 'rollouts 4–6 of 7 (newest first); more: --offset 6\n');
    assert.deepEqual([both.code, both.stdout, both.stderr], [2, '', 'fleetprune: --offset and --containing: give one of them, not both\n']);
    assert.equal(rolloutPage.code, 0, rolloutPage.stderr);
    assert.deepEqual(rolloutPage.stdout.trim().split('\n').map((line) => line.split(' ')[0]), ['ro-page-3', 'ro-page-2', 'ro-page-1']);
    assert.equal(rolloutPage.stderr, 'rollouts 4–6 of 7 (newest first); more: --offset 6\n');
    // The last page: no pointer to a next one.
    assert.equal(rolloutLast.code, 0, rolloutLast.stderr);
    assert.deepEqual(rolloutLast.stdout.trim().split('\n').map((line) => line.split(' ')[0]), ['ro-page-2', 'ro-page-0']);
    assert.equal(rolloutLast.stderr, '');

    assert.equal(jobTable.code, 0, jobTable.stderr);
    const lines = jobTable.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^ID\s+STATE/);
    // stdout is the table alone; the page's footer goes to stderr, as rollout list's does.
    assert.deepEqual(lines.slice(1).map((line) => line.split(' ')[0]), ['job-page-3', 'job-page-2']);
    assert.equal(jobTable.stderr, 'jobs 2–3 of 5 (newest first); more: --offset 3\n');

    // --json is GET /api/jobs's answer: the jobs, total and more.
    assert.equal(jobJson.code, 0, jobJson.stderr);
    assert.deepEqual(JSON.parse(jobJson.stdout), await rest('/api/jobs?limit=2&offset=2'));
    assert.deepEqual([JSON.parse(jobJson.stdout).total, JSON.parse(jobJson.stdout).more], [JOBS, true]);
  });

  await t.test('rollout list --model naming no registered model and no rollout is refused, exit 2 (a typo listed nothing, exit 0)', async () => {
    const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
    const expected = 'fleetprune: --model wnie: no such model is registered, and no rollout names it (fleetprune models list names the models)\n';
    for (const json of [[], ['--json']]) {
      const typo = await runCli(['rollout', 'list', '--model', 'wnie', ...json, ...connection]);
      assert.equal(typo.code, 2, typo.stderr);
      assert.equal(typo.stdout, '');
      assert.equal(typo.stderr, expected);
    }
    // A model with rollouts lists them, registered or not (these were stored without one).
    const known = await runCli(['rollout', 'list', '--model', 'wine', ...connection]);
    assert.equal(known.code, 0, known.stderr);
    const wine = known.stdout.split('\n').filter(Boolean);
    assert.ok(wine.length > 0, `no rollouts listed (stderr: ${known.stderr})`);
    assert.ok(wine.every((line) => / wine /.test(line)), known.stdout);
  });

  await t.test('a bad --offset is refused before connecting: one line naming the flag, exit code 2', async () => {
    const bad = ['-1', 'abc', '1.5', '1000000001'];
    const cases = [
      ...bad.map((offset) => ({ args: ['rollout', 'list', '--offset', offset, '--server', server.grpcAddress, '--token', ADMIN_TOKEN] })),
      ...bad.map((offset) => ({ args: ['jobs', 'list', '--offset', offset, '--server', server.grpcAddress, '--token', ADMIN_TOKEN] })),
    ];
    const results = await runCliBatch(cases);
    results.forEach((result, i) => {
      const label = cases[i]!.args.slice(0, 4).join(' ');
      assert.equal(result.code, 2, `${label}: ${result.stderr}`);
      assert.equal(result.stdout, '', label);
      assert.match(result.stderr, /^[^\n]*option '--offset <n>' argument '[^']*' is invalid\.[^\n]*\n$/, label);
    });
  });
});
