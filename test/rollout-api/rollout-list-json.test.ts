import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ReducerHarness, STAGED_STEPS, T0, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';

test('rollout list --json prints what GET /api/rollouts answers, page by page, and the empty page', async (t) => {
  const server = (await startTestServer(t))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const rest = async (path: string) => {
    const response = await server.request('GET', path);
    assert.equal(response.status, 200, path);
    return (await response.json()) as { rollouts: Record<string, unknown>[]; total: number; more: boolean };
  };
  const list = async (args: string[]) => {
    const result = await runCli(['rollout', 'list', '--json', ...args, ...connection]);
    assert.equal(result.code, 0, result.stderr);
    // stdout is the JSON alone: no "no rollouts" line and no page footer.
    assert.equal(result.stderr, '', args.join(' '));
    return JSON.parse(result.stdout) as unknown;
  };

  // No rollouts: the empty page, not the "no rollouts" line.
  assert.deepEqual(await list([]), { rollouts: [], total: 0, more: false, offset: 0 });
  assert.deepEqual(await list([]), await rest('/api/rollouts'));

  // Written straight to the store (nothing drives them): one of each shape REST shows differently.
  const repository = new StoreRolloutRepository(server.server.ctx.store.engine);
  const delivered = (h: ReducerHarness) => h.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const }));
  const aborted = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(2), '1', 'ro-json-0');
  await repository.create({
    state: { ...aborted.state, phase: 'Aborted', devices: delivered(aborted), outcome: { status: 'aborted', reason: 'operator: bad\nbatch', at: T0 + 5_000 } },
    pendingActions: [],
    decisions: [],
  });
  const paused = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(3), null, 'ro-json-1');
  await repository.create({
    state: { ...paused.state, phase: 'Paused', devices: delivered(paused), pause: { reason: 'step', since: T0 + 1_000, until: Date.now() + 3_600_000, message: 'paused for 1h' } },
    pendingActions: [],
    decisions: [],
  });
  const running = new ReducerHarness(specOf(STAGED_STEPS, { model: 'beer' }), fleetOf(2), '7', 'ro-json-2');
  await repository.create({ state: running.state, pendingActions: [], decisions: [] });
  // The leader picks up the two unfinished ones (nothing drove them), writing a takeover entry in each: compared after that.
  const deadline = Date.now() + 30_000;
  for (const id of ['ro-json-1', 'ro-json-2']) {
    while (!(await repository.decisions(id)).some((entry) => entry.kind === 'takeover')) {
      assert.ok(Date.now() < deadline, `${id} was never picked up`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const pages: [string[], string][] = [
    [[], ''],
    [['--limit', '1'], '?limit=1'],
    [['--offset', '1'], '?offset=1'],
    [['--limit', '1', '--offset', '1'], '?limit=1&offset=1'],
    [['--limit', '2', '--containing', 'ro-json-0'], '?limit=2&containing=ro-json-0'],
  ];
  const answers = await Promise.all(pages.map(([args]) => list(args)));
  for (const [index, [args, query]] of pages.entries()) {
    assert.deepEqual(answers[index], await rest(`/api/rollouts${query}`), args.join(' ') || '(no flags)');
  }

  // The fields the text line leaves out are there, as REST gives them.
  const all = answers[0] as Awaited<ReturnType<typeof rest>>;
  assert.deepEqual([all.rollouts.map((r) => r.id), all.total, all.more], [['ro-json-2', 'ro-json-1', 'ro-json-0'], 3, false]);
  const [first, second, third] = all.rollouts;
  assert.deepEqual([first!.pause, first!.outcome, first!.previousProduction], [null, null, '7']);
  assert.deepEqual(second!.pause, { reason: 'step', since: new Date(T0 + 1_000).toISOString(), until: (second!.pause as { until: string }).until, message: 'paused for 1h' });
  assert.match((second!.pause as { until: string }).until, /^\d{4}-\d\d-\d\dT/);
  assert.equal(second!.previousProduction, null);
  assert.deepEqual(third!.outcome, { status: 'aborted', reason: 'operator: bad\nbatch', at: new Date(T0 + 5_000).toISOString() });
  assert.equal(typeof third!.revision, 'number');
  assert.deepEqual([(answers[3] as typeof all).rollouts.map((r) => r.id), (answers[3] as typeof all).more], [['ro-json-1'], true]);
  // The page that holds a rollout, and where it starts.
  assert.deepEqual([(answers[4] as typeof all).rollouts.map((r) => r.id), (answers[4] as { offset: number }).offset], [['ro-json-0'], 2]);
});
