import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { devicesNotBack, RolloutCommandError } from '../../server/rollout/rollout-state-machine.ts';
import { ReducerHarness, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from './helpers/rollout-server.ts';

/**
 * `rollout rollback` of an aborted (or failed) rollout: it re-sends the baseline to the devices not
 * back on it; with every device back it is refused ("already reverted") and the rollout stays
 * Aborted; and once a newer rollout of the model has promoted or is under way it is refused naming
 * that one, as for a promoted rollout. The same answer every time: the first call used to turn the
 * rollout RolledBack with a decision though nothing was sent, and only the second was refused.
 */

const HELD = { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] };

async function start(s: RolloutTestServer): Promise<string> {
  const started = await s.request('POST', '/api/rollouts', { json: HELD });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 1);
  return id;
}

for (const engine of STORE_ENGINES) {
  describe(`rollback of an aborted rollout (${engine})`, () => {
    test('with every device back it is refused as already reverted, and once a newer rollout completed it is refused naming it; the rollout stays Aborted, its log unchanged', async (t) => {
      const s = await startRolloutServer(t, { engine });
      if (!s) return;
      const a = await start(s);
      assert.equal((await s.request('POST', `/api/rollouts/${a}/abort`)).status, 200);
      const abortedView = await waitForRollout(s.request, a, (v) => v.phase === 'Aborted' && v.pendingActions.length === 0);
      assert.ok(abortedView.deviceStates.every((d: any) => d.delivery === 'delivered' || d.delivery === 'idle'), `every device back: ${JSON.stringify(abortedView.deviceStates)}`);

      const refusedTwice = async (message: string) => {
        for (let i = 0; i < 2; i++) {
          const answer: Response = await s.request('POST', `/api/rollouts/${a}/rollback?reason=again`);
          assert.equal(answer.status, 409, `call ${i + 1}`);
          assert.deepEqual(await answer.json(), { error: { code: 'conflict', message } }, `call ${i + 1}`);
          const view = (await (await s.request('GET', `/api/rollouts/${a}`)).json()) as any;
          assert.equal(view.phase, 'Aborted', `call ${i + 1}: the phase stays`);
          assert.equal(view.decisions.length, abortedView.decisions.length, `call ${i + 1}: no new decision`);
        }
      };
      await refusedTwice(`rollout ${a} is already reverted (Aborted): every device it touched is back on its baseline; nothing to roll back`);

      const b = await start(s);
      assert.equal((await s.request('POST', `/api/rollouts/${b}/promote`)).status, 200);
      await waitForRollout(s.request, b, (v) => v.phase === 'Completed' && v.pendingActions.length === 0);
      await refusedTwice(`rollout ${b} of wine (Completed, 2) came after this one; rolling this one back would undo it: roll back ${b} instead`);
    });
  });
}

describe('rollout state machine: rollback after an abort', () => {
  it('re-sends the baseline to the devices not back on it (refused, still on their way) and ends RolledBack; with all back it is refused and nothing changes', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }]), fleetOf(3));
    h.deliver(h.last('assign'));
    h.send({ type: 'abort', at: h.at, by: 'ops' });
    h.deliver(h.last('revert'), (id) => (id === 'dev-02' ? 'refused' : 'delivered'));
    assert.equal(h.state.phase, 'Aborted');
    assert.deepEqual(devicesNotBack(h.state).map((d) => d.id), ['dev-02'], 'what the dashboard counts to keep "Roll back" on');
    const actions = h.send({ type: 'rollback', at: h.at, by: 'ops' });
    assert.equal(h.state.phase, 'RolledBack');
    const resent = actions.find((action) => action.kind === 'revert');
    assert.ok(resent && resent.kind === 'revert', 'a revert is sent again');
    assert.deepEqual(resent.devices.map((d) => d.deviceId), ['dev-02']);

    const all = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }]), fleetOf(3));
    all.deliver(all.last('assign'));
    all.send({ type: 'abort', at: all.at, by: 'ops' });
    all.deliver(all.last('revert'));
    assert.deepEqual(devicesNotBack(all.state), [], 'the dashboard disables "Roll back"');
    const before = { state: all.state, decisions: all.decisions.length, actions: all.actions.length };
    assert.throws(() => all.send({ type: 'rollback', at: all.at, by: 'ops' }), (error: unknown) => {
      assert.ok(error instanceof RolloutCommandError, `a RolloutCommandError: ${String(error)}`);
      assert.equal(error.message, 'rollout ro-test is already reverted (Aborted): every device it touched is back on its baseline; nothing to roll back');
      return true;
    });
    assert.equal(all.state, before.state, 'the state is unchanged');
    assert.equal(all.state.phase, 'Aborted');
    assert.equal(all.decisions.length, before.decisions);
    assert.equal(all.actions.length, before.actions);
  });
});
