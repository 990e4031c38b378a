import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cohortOrder, cohortSize, growCohort } from '../../server/rollout/cohort-selection.ts';
import { awaitsLateAnswer, devicesNotBack, FleetListNeeded, nextWakeAt, RolloutCommandError, startRollout, weight } from '../../server/rollout/rollout-state-machine.ts';
import { analysisStep, fleetOf, ReducerHarness, specOf, STAGED_STEPS, T0 } from './rollout-fixtures.ts';
import type { RolloutAction } from '../../server/rollout/rollout-state.ts';

const MESSAGE_ID = /^[A-Za-z0-9_-]{8,64}$/;

describe('cohort selection', () => {
  const ids = Array.from({ length: 40 }, (_, i) => `dev-${i}`);

  it('is deterministic, and differs between rollouts', () => {
    assert.deepEqual(cohortOrder('ro-a', ids), cohortOrder('ro-a', [...ids].reverse()));
    assert.notDeepEqual(cohortOrder('ro-a', ids), cohortOrder('ro-b', ids));
  });

  it('is stable when devices join or leave: the others keep their relative order', () => {
    const before = cohortOrder('ro-a', ids);
    const after = cohortOrder('ro-a', [...ids.filter((id) => id !== 'dev-7'), 'dev-new']);
    assert.deepEqual(after.filter((id) => id !== 'dev-new'), before.filter((id) => id !== 'dev-7'));
  });

  it('nests cohorts: 5% ⊂ 25% ⊂ 50% ⊂ 100%', () => {
    const order = cohortOrder('ro-a', ids);
    let cohort: string[] = [];
    const sizes: number[] = [];
    for (const percent of [5, 25, 50, 100]) {
      const grown = growCohort(order, cohort, percent);
      assert.deepEqual(grown.slice(0, cohort.length), cohort, `${percent}% keeps the previous cohort`);
      cohort = grown;
      sizes.push(cohort.length);
    }
    assert.deepEqual(sizes, [2, 10, 20, 40]);
    assert.equal(cohortSize(5, 3), 1, 'any positive percentage gets at least one device');
    assert.equal(cohortSize(34, 3), 2);
    assert.equal(cohortSize(100, 0), 0);
  });

  it('keeps explicit pilot devices and fills percentages around them', () => {
    const order = cohortOrder('ro-a', ids);
    const pilot = [order[39]!, order[38]!];
    const grown = growCohort(order, pilot, 25);
    assert.equal(grown.length, 10);
    assert.deepEqual(grown.slice(0, 2), pilot);
  });
});

describe('rollout state machine: automatic decisions', () => {
  it('promotes a good candidate through 5% → 25% → 50% → 100% and marks it production', () => {
    const h = new ReducerHarness(specOf(STAGED_STEPS));
    const weights: number[] = [];
    for (let step = 0; step < 3; step += 1) {
      const assign = h.last('assign');
      assert.equal(assign.role, 'candidate');
      h.deliver(assign);
      weights.push(weight(h.state));
      assert.equal(h.state.stepStage, 'analyzing');
      assert.equal(h.last('startAnalysis').runId, h.state.analysis!.runId);
      h.completeAnalysis('Successful');
    }
    const hundred = h.last('assign');
    assert.equal(hundred.role, 'candidate');
    h.deliver(hundred);
    weights.push(weight(h.state));
    const assigned = h.actions.filter((a) => a.kind === 'assign' && a.role === 'candidate');
    assert.deepEqual(assigned.map((a) => (a.kind === 'assign' ? a.devices.length : 0)), [1, 4, 5, 10], 'only new devices are assigned at each step');
    assert.deepEqual(weights, [5, 25, 50, 100]);
    const activation = h.last('assign');
    assert.equal(activation.role, 'active');
    assert.equal(activation.devices.length, 20);
    assert.equal(h.state.stepStage, 'activating');
    h.deliver(activation);
    assert.equal(h.state.phase, 'Completed');
    assert.equal(h.state.outcome?.status, 'production');
    const mark = h.last('markVersion');
    assert.deepEqual({ version: mark.version, status: mark.status }, { version: '2', status: 'production' });
    assert.equal(weight(h.state), 100);
    for (const action of h.actions) assert.match(action.id, MESSAGE_ID);
    assert.equal(new Set(h.actions.map((a) => a.id)).size, h.actions.length, 'action ids are unique');
    assert.deepEqual(h.decisions.filter((d) => d.kind === 'step' && d.verdict === 'started').map((d) => d.stepIndex), [0, 1, 2, 3, 4, 5, 6]);
  });

  it('fails a bad candidate at the pilot and reverts every device it touched to its own baseline', () => {
    const spec = specOf([{ devices: ['dev-01', 'dev-02', 'dev-03'] }, analysisStep(), { setWeight: 100 }]);
    const h = new ReducerHarness(spec);
    h.deliver(h.last('assign'));
    const actions = h.completeAnalysis('Failed', 'accuracy: 2 failed measurements > failureLimit 1');
    assert.equal(h.state.phase, 'Failed');
    const revert = actions.find((a) => a.kind === 'revert');
    assert.ok(revert && revert.kind === 'revert');
    assert.deepEqual(revert.devices, [
      { deviceId: 'dev-01', version: '0.9' },
      { deviceId: 'dev-02', version: '1' },
      { deviceId: 'dev-03', version: '1' },
    ].sort((a, b) => h.state.devices.findIndex((d) => d.id === a.deviceId) - h.state.devices.findIndex((d) => d.id === b.deviceId)));
    const mark = actions.find((a) => a.kind === 'markVersion');
    assert.ok(mark && mark.kind === 'markVersion');
    assert.equal(mark.status, 'failed');
    assert.equal(mark.reason, 'analysis failed at step 2: accuracy: 2 failed measurements > failureLimit 1');
    assert.equal(h.state.outcome?.reason, mark.reason);
    assert.ok(!actions.some((a) => a.kind === 'assign'), 'nothing is promoted');
    h.deliver(revert);
    assert.ok(h.state.devices.filter((d) => d.touched).every((d) => d.desired === 'baseline' && d.delivery === 'delivered'));
  });

  it('treats an analysis Error like a failure (Argo semantics)', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 10 }, analysisStep()]));
    h.deliver(h.last('assign'));
    h.completeAnalysis('Error', 'prometheus: cannot reach');
    assert.equal(h.state.phase, 'Failed');
    assert.match(h.state.outcome!.reason, /analysis could not measure at step 2: prometheus: cannot reach/);
  });

  it('pauses on Inconclusive and never promotes by itself', () => {
    const h = new ReducerHarness(specOf(STAGED_STEPS));
    h.deliver(h.last('assign'));
    const actions = h.completeAnalysis('Inconclusive', 'too few samples');
    assert.deepEqual(actions, []);
    assert.equal(h.state.phase, 'Paused');
    assert.equal(h.state.pause?.reason, 'inconclusive');
    for (let i = 0; i < 10; i += 1) assert.deepEqual(h.tick(3_600_000), [], 'time alone does nothing');
    assert.equal(h.state.stepIndex, 1);
    // resume re-runs the analysis; promote (step) skips it.
    const rerun = h.send({ type: 'resume', at: h.at, by: 'bob' });
    assert.deepEqual(rerun.map((a) => a.kind), ['startAnalysis']);
    assert.notEqual(h.state.analysis!.runId, 'ro-test-r1');
    h.completeAnalysis('Inconclusive');
    const skipped = h.send({ type: 'promote', at: h.at, by: 'bob', full: false });
    assert.equal(h.state.stepIndex, 2);
    assert.deepEqual(skipped.map((a) => a.kind), ['assign']);
  });

  it('waits for a timed pause, and an untimed pause until resumed', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 10 }, { pause: { duration: '5m' } }, { pause: {} }, { setWeight: 100 }]));
    h.deliver(h.last('assign'));
    assert.equal(h.state.phase, 'Paused');
    assert.equal(nextWakeAt(h.state), T0 + 300_000);
    h.tick(299_000);
    assert.equal(h.state.stepIndex, 1);
    h.tick(1_000);
    assert.equal(h.state.stepIndex, 2);
    assert.equal(h.state.pause?.until, undefined);
    h.tick(86_400_000);
    assert.equal(h.state.stepIndex, 2);
    h.send({ type: 'resume', at: h.at, by: 'bob' });
    assert.equal(h.state.stepIndex, 3);
    assert.equal(h.last('assign').devices.length, 18);
  });
});

describe('rollout state machine: manual control', () => {
  it('rolls back after full promotion: every device to its baseline, previous production restored', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 50 }, { setWeight: 100 }]));
    h.deliver(h.last('assign'));
    h.deliver(h.last('assign'));
    h.deliver(h.last('assign'));
    assert.equal(h.state.phase, 'Completed');
    // Promoted, its rollback needs the devices that run the candidate (outside the rollout too).
    assert.throws(() => h.send({ type: 'rollback', at: h.at, by: 'carol', reason: 'complaints' }), FleetListNeeded);
    assert.equal(h.state.phase, 'Completed');
    const actions = h.send({ type: 'rollback', at: h.at, by: 'carol', reason: 'complaints', runningCandidate: [] });
    assert.equal(h.state.phase, 'RolledBack');
    const revert = actions.find((a) => a.kind === 'revert');
    assert.ok(revert && revert.kind === 'revert');
    assert.equal(revert.devices.length, 20, 'one call, every device');
    assert.deepEqual(new Set(revert.devices.map((d) => d.version)), new Set(['0.9', '1']));
    const marks = actions.filter((a) => a.kind === 'markVersion').map((a) => (a.kind === 'markVersion' ? `${a.version}:${a.status}` : ''));
    assert.deepEqual(marks, ['2:rolled-back', '1:production']);
    assert.throws(() => h.send({ type: 'rollback', at: h.at, by: 'carol' }), /already rolled back/);
  });

  it('a one-step rollout to one device says "1 step" and "its one device", not "1 steps" and "all 1 devices"', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 100 }]), fleetOf(1));
    assert.match(h.decisions.find((d) => d.kind === 'start')!.message, /^rollout of \S+ \S+ to 1 device \(.*\) in 1 step, started by /);
    h.deliver(h.last('assign'));
    assert.match(h.decisions.find((d) => d.kind === 'promotion' && d.verdict === 'activating')!.message, /^activating \S+ on its one device$/);
  });

  it('rolled back again: the baseline goes again to the devices that refused it or were unreachable, never to one that left the fleet', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 100 }]), fleetOf(4));
    h.deliver(h.last('assign'));
    h.deliver(h.last('assign'));
    assert.equal(h.state.phase, 'Completed');
    h.send({ type: 'rollback', at: h.at, by: 'carol', runningCandidate: [] });
    const revert = h.last('revert');
    const outcomes: Record<string, 'delivered' | 'refused' | 'gone'> = { 'dev-01': 'delivered', 'dev-02': 'refused', 'dev-03': 'gone', 'dev-04': 'delivered' };
    h.send({ type: 'actionResult', at: h.at, actionId: revert.id, devices: revert.devices.map(({ deviceId }) => ({ deviceId, outcome: outcomes[deviceId]! })) });
    assert.deepEqual(h.state.devices.map((d) => `${d.id}:${d.delivery}`).sort(), ['dev-01:delivered', 'dev-02:refused', 'dev-03:unreachable', 'dev-04:delivered']);
    assert.deepEqual(devicesNotBack(h.state).map((d) => d.id), ['dev-02'], 'what the dashboard counts to keep "Roll back" on');
    // Left during the revert: nothing goes on; nothing more is sent to it.
    assert.ok(h.decisions.some((d) => d.message === 'device dev-03 left the fleet (gone); nothing more is sent to it'), JSON.stringify(h.decisions.map((d) => d.message)));

    h.send({ type: 'rollback', at: h.at, by: 'carol' });
    const again = h.last('revert');
    assert.notEqual(again.id, revert.id);
    assert.deepEqual(again.devices.map((d) => d.deviceId), ['dev-02'], 'only the device that refused; dev-03 left the fleet');
    assert.match(h.decisions.at(-1)!.message, /1 device not back on its baseline is sent it again \(dev-02\)/);
    h.deliver(again);
    assert.deepEqual(devicesNotBack(h.state), []);
    assert.throws(() => h.send({ type: 'rollback', at: h.at, by: 'carol' }), /already rolled back/, 'dev-03 left: nothing to send');
  });

  // A device assigned something by hand after the rollout (a candidate of another version): the
  // revert was not sent to it (the rollback does not undo a newer assignment), yet it was logged as
  // "refused its baseline: superseded", counted not back for good (Roll back stayed on), and every
  // rollback again said it "is sent it again" while nothing was sent.
  it('a device sent something newer since is not reverted, and says so: not counted as one to send again; a rollback again is refused naming it', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 100 }]), fleetOf(3));
    h.deliver(h.last('assign'));
    h.deliver(h.last('assign'));
    assert.equal(h.state.phase, 'Completed');
    h.send({ type: 'rollback', at: h.at, by: 'carol', runningCandidate: [] });
    const revert = h.last('revert');
    h.send({ type: 'actionResult', at: h.at, actionId: revert.id, devices: revert.devices.map(({ deviceId }) => (deviceId === 'dev-03' ? { deviceId, outcome: 'superseded' as const, reason: 'the device has been sent something newer since' } : { deviceId, outcome: 'delivered' as const })) });
    assert.equal(h.decisions.at(-1)!.message, 'device dev-03 was not sent its baseline: it has been sent something newer since (an assignment, or another rollout), which this revert does not undo: if it does not run its baseline now (fleetprune devices show dev-03), assign it by hand');
    assert.deepEqual(devicesNotBack(h.state), [], 'nothing a rollback could send: Roll back is off');
    assert.throws(() => h.send({ type: 'rollback', at: h.at, by: 'carol' }), (error: unknown) => {
      assert.ok(error instanceof RolloutCommandError, String(error));
      assert.equal(error.message, 'rollout ro-test is already rolled back: every device it touched is back on its baseline, but for dev-03, sent something newer since, which a rollback does not undo (assign it its baseline by hand); nothing to roll back');
      return true;
    });

    // The same after an abort: the rollback names it too, not "every device … is back".
    const aborted = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }]), fleetOf(3));
    aborted.deliver(aborted.last('assign'));
    aborted.send({ type: 'abort', at: aborted.at, by: 'carol' });
    const undo = aborted.last('revert');
    aborted.send({ type: 'actionResult', at: aborted.at, actionId: undo.id, devices: undo.devices.map(({ deviceId }) => (deviceId === 'dev-03' ? { deviceId, outcome: 'superseded' as const } : { deviceId, outcome: 'delivered' as const })) });
    assert.equal(aborted.state.phase, 'Aborted');
    assert.throws(() => aborted.send({ type: 'rollback', at: aborted.at, by: 'carol' }), /^RolloutCommandError: rollout ro-test is already reverted \(Aborted\): every device it touched is back on its baseline, but for dev-03, sent something newer since, which a rollback does not undo \(assign it its baseline by hand\); nothing to roll back$/);
  });

  it('rolled back again while the revert waits for a retry after failing (the fleet was down): accepted, sent again now, logged once; while it is on its way, or with every device back, refused and nothing changes', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 30 }, { pause: {} }, { setWeight: 100 }]), fleetOf(10));
    h.deliver(h.last('assign'));
    h.send({ type: 'rollback', at: h.at, by: 'bob' });
    assert.equal(h.state.phase, 'RolledBack');
    const revert = h.last('revert');
    const cohort = revert.devices.map((d) => d.deviceId);
    assert.equal(cohort.length, 3);
    assert.deepEqual(devicesNotBack(h.state).map((d) => d.id), cohort, 'still being reverted: not back (the dashboard keeps "Roll back" on, as for an aborted rollout)');

    // The revert is on its way (no failure): a second rollback (clicked twice) is refused, naming what it waits for.
    const before = { state: h.state, actions: h.actions.length, decisions: h.decisions.length };
    assert.throws(() => h.send({ type: 'rollback', at: h.at, by: 'carol' }), (error: unknown) => {
      assert.ok(error instanceof RolloutCommandError, `a RolloutCommandError: ${String(error)}`);
      assert.equal(error.message, `rollout ro-test is already rolled back: its revert is on its way to 3 devices (${cohort.join(', ')}); nothing to send again`);
      return true;
    });
    assert.equal(h.state, before.state, 'the state is unchanged');
    assert.equal(h.actions.length, before.actions, 'nothing is sent');
    assert.equal(h.decisions.length, before.decisions, 'nothing is logged');

    // Its last attempt failed and it waits for a retry (the controller says so): accepted, sent again now.
    h.at += 11 * 60_000;
    const actions = h.send({ type: 'rollback', at: h.at, by: 'carol', reason: 'still on the candidate', stalledActions: [revert.id] });
    assert.equal(h.state.phase, 'RolledBack');
    assert.deepEqual(actions.map((a) => a.kind), ['revert'], 'only the revert: no second version status change');
    const again = h.last('revert');
    assert.notEqual(again.id, revert.id);
    assert.deepEqual(again.devices, revert.devices, 'the same devices, to the same baselines');
    assert.equal(h.decisions.length, before.decisions + 1, 'one decision');
    assert.deepEqual(
      { kind: h.decisions.at(-1)!.kind, verdict: h.decisions.at(-1)!.verdict, by: h.decisions.at(-1)!.by, message: h.decisions.at(-1)!.message },
      { kind: 'rollback', verdict: 'rolled-back', by: 'carol', message: `rolled back again by carol (still on the candidate): 3 devices not back on their baseline are sent it again (${cohort.join(', ')}): 3 whose revert failed and was waiting to be retried` },
    );
    assert.equal(h.state.rolledBackAt, h.at);
    assert.equal(h.state.outcome?.reason, 'rolled back by bob', 'the outcome stays the first rollback');

    h.deliver(again);
    assert.deepEqual(devicesNotBack(h.state), [], 'every device back: the dashboard turns "Roll back" off');
    const back = { state: h.state, decisions: h.decisions.length };
    assert.throws(
      () => h.send({ type: 'rollback', at: h.at, by: 'carol', stalledActions: [revert.id] }),
      (error: unknown) => error instanceof RolloutCommandError && error.message === 'rollout ro-test is already rolled back: every device it touched is back on its baseline; nothing to roll back',
      'a stale action id changes nothing once every device is back',
    );
    assert.equal(h.state, back.state, 'the state is unchanged');
    assert.equal(h.decisions.length, back.decisions, 'nothing is logged');
  });

  it('promote (full) skips every remaining step and analysis', () => {
    const h = new ReducerHarness(specOf(STAGED_STEPS));
    h.deliver(h.last('assign'));
    const actions = h.send({ type: 'promote', at: h.at, by: 'dave', full: true });
    assert.deepEqual(actions.map((a) => a.kind), ['stopAnalysis', 'assign']);
    const activation = h.last('assign');
    assert.equal(activation.role, 'active');
    h.deliver(activation);
    assert.equal(h.state.phase, 'Completed');
  });

  it('pause stops the analysis; resume restarts it; abort reverts and marks the candidate failed', () => {
    const h = new ReducerHarness(specOf(STAGED_STEPS));
    h.deliver(h.last('assign'));
    const runId = h.state.analysis!.runId;
    assert.deepEqual(h.send({ type: 'pause', at: h.at, by: 'erin' }).map((a) => a.kind), ['stopAnalysis']);
    assert.throws(() => h.send({ type: 'pause', at: h.at, by: 'erin' }), (e: unknown) => e instanceof RolloutCommandError && /already paused/.test(e.message));
    // a late result of the stopped run is ignored
    assert.deepEqual(h.send({ type: 'analysisCompleted', at: h.at, runId, phase: 'Successful', message: 'late' }), []);
    assert.equal(h.state.stepIndex, 1);
    assert.deepEqual(h.send({ type: 'resume', at: h.at, by: 'erin' }).map((a) => a.kind), ['startAnalysis']);
    const actions = h.send({ type: 'abort', at: h.at, by: 'erin', reason: 'wrong model' });
    assert.equal(h.state.phase, 'Aborted');
    assert.deepEqual(actions.map((a) => a.kind), ['stopAnalysis', 'revert', 'markVersion']);
    assert.throws(() => h.send({ type: 'resume', at: h.at, by: 'erin' }), /cannot resume rollout ro-test: it is Aborted/);
    assert.throws(() => h.send({ type: 'resume', at: h.at, by: 'erin' }), RolloutCommandError);
  });

  it('rejects rollouts that cannot start, naming the field', () => {
    const devices = fleetOf(3);
    assert.throws(() => startRollout('ro-x', specOf([{ devices: ['dev-01', 'ghost'] }]), { type: 'start', at: T0, by: 'a', devices, previousProduction: null }), /steps\[0\]\.devices\[1\]: device "ghost" is not a target device: no live device has that id$/);
    // Named by why: a device that runs another model (no baseline of this one), or is outside the target.
    const mixed = [...devices, { ...devices[0]!, id: 'iris-1', baseline: null }];
    assert.throws(() => startRollout('ro-x', specOf([{ devices: ['iris-1'] }]), { type: 'start', at: T0, by: 'a', devices: mixed, previousProduction: null }), /steps\[0\]\.devices\[0\]: device "iris-1" is not a target device: it runs no registered version of wine \(another model, none yet, or a version the registry does not hold; give it one with fleetprune assign\)$/);
    assert.throws(() => startRollout('ro-x', specOf([{ selector: { matchLabels: { pilot: 'true' } } }]), { type: 'start', at: T0, by: 'a', devices, previousProduction: null }), /steps\[0\]\.selector: no target device matches pilot=true/);
    assert.throws(() => startRollout('ro-x', specOf([{ setWeight: 5 }], { target: { matchLabels: { site: 'south' } } }), { type: 'start', at: T0, by: 'a', devices, previousProduction: null }), /target: no device running wine matches site=south/);
    assert.throws(() => startRollout('x', specOf([{ setWeight: 5 }]), { type: 'start', at: T0, by: 'a', devices, previousProduction: null }), /rollout id "x"/);
  });

  it('targets only devices running the model: one without it has no baseline to go back to', () => {
    const devices = [...fleetOf(3), { id: 'dev-new', labels: { site: 'north' }, baseline: null }];
    const { state, decisions } = startRollout('ro-x', specOf([{ setWeight: 100 }]), { type: 'start', at: T0, by: 'a', devices, previousProduction: null });
    assert.deepEqual(state.devices.map((device) => device.id).sort(), ['dev-01', 'dev-02', 'dev-03']);
    assert.match(decisions[0]!.message, /1 matching device left out: not running wine/);
    const fresh = [{ id: 'dev-new', labels: { site: 'north' }, baseline: null }];
    assert.throws(
      () => startRollout('ro-y', specOf([{ setWeight: 100 }]), { type: 'start', at: T0, by: 'a', devices: fresh, previousProduction: null }),
      /target: no device running wine matches site=north; 1 matching device does not run it \(give a device its first version with fleetprune assign\)/,
    );
  });

  // Accepted before: the devices refused the candidate as their active model, the rollout failed,
  // and the version they all ran was marked failed.
  it('refuses a rollout whose candidate some target already runs as its active model, naming them', () => {
    const devices = fleetOf(3).map((device, i) => ({ ...device, baseline: i === 1 ? '2' : '1' }));
    assert.throws(
      () => startRollout('ro-x', specOf([{ setWeight: 100 }]), { type: 'start', at: T0, by: 'a', devices, previousProduction: null }),
      /^RolloutCommandError: target: wine 2 is already the active model \(run or assigned\) of 1 of the 3 target devices \(dev-02\): target only devices that run another version, or assign those another version first$/,
    );
    const all = fleetOf(8).map((device) => ({ ...device, baseline: '2' }));
    assert.throws(() => startRollout('ro-x', specOf([{ setWeight: 100 }]), { type: 'start', at: T0, by: 'a', devices: all, previousProduction: null }), /of 8 of the 8 target devices \(dev-01, dev-02, dev-03, dev-04, dev-05, … \(3 more\)\)/);
    // Devices outside the target may run it.
    const outside = [...fleetOf(3), { id: 'dev-south', labels: { site: 'south' }, baseline: '2' }];
    assert.equal(startRollout('ro-x', specOf([{ setWeight: 100 }]), { type: 'start', at: T0, by: 'a', devices: outside, previousProduction: null }).state.devices.length, 3);
  });

  it('selects a pilot cohort by label', () => {
    const h = new ReducerHarness(specOf([{ selector: { matchLabels: { pilot: 'true' } } }, { setWeight: 100 }]), fleetOf(10, (i): Record<string, string> => (i < 3 ? { pilot: 'true' } : {})));
    assert.deepEqual([...h.last('assign').devices].sort(), ['dev-01', 'dev-02', 'dev-03']);
  });
});

describe('rollout state machine: an operator\'s pause during a timed pause step', () => {
  const timed = () => {
    const h = new ReducerHarness(specOf([{ setWeight: 10 }, { pause: { duration: '10m' } }, { setWeight: 100 }]));
    h.deliver(h.last('assign'));
    assert.deepEqual([h.state.phase, h.state.stepIndex, h.state.pause?.reason, h.state.pause?.until], ['Paused', 1, 'step', T0 + 600_000]);
    return h;
  };

  it('holds the rollout: the timer no longer moves it on; resume continues the timed pause for the time it has left', () => {
    const h = timed();
    h.at += 180_000;
    assert.deepEqual(h.send({ type: 'pause', at: h.at, by: 'bob' }), [], 'nothing to stop or send');
    assert.equal(h.state.phase, 'Paused');
    assert.equal(h.state.pause?.reason, 'manual');
    assert.equal(h.state.pause?.until, undefined);
    assert.equal(h.state.stepStartedAt, T0, 'the time already served is kept');
    assert.equal(h.state.stepStage, 'pausing');
    assert.equal(nextWakeAt(h.state), undefined, 'no timer');
    assert.equal(h.decisions.at(-1)!.message, "paused by bob during step 2's timed pause (10m, 7m left): held until resumed; resume continues the timed pause until 2026-01-01T00:10:00.000Z, or ends the step if that has passed");
    assert.equal(h.state.pause?.message, h.decisions.at(-1)!.message);

    // A pause on the operator's pause is refused, saying what holds it.
    assert.throws(() => h.send({ type: 'pause', at: h.at, by: 'carol' }), (error: unknown) => error instanceof RolloutCommandError && error.message === `rollout ro-test is already paused (${h.state.pause!.message})`);

    h.tick(60_000);
    assert.deepEqual([h.state.phase, h.state.stepIndex], ['Paused', 1]);
    // Resumed at 4 minutes: the timed pause goes on until its end, 10 minutes after the step started.
    h.send({ type: 'resume', at: h.at, by: 'bob' });
    assert.deepEqual([h.state.phase, h.state.stepIndex, h.state.pause?.reason, h.state.pause?.until], ['Paused', 1, 'step', T0 + 600_000]);
    assert.equal(nextWakeAt(h.state), T0 + 600_000);
    h.tick(359_000);
    assert.equal(h.state.stepIndex, 1);
    h.tick(1000);
    assert.equal(h.state.stepIndex, 2, 'the timed pause ended when it would have');
    assert.equal(h.last('assign').devices.length, 18);
  });

  it('held past the end of the timed pause: nothing moves until resume, which ends the step', () => {
    const h = timed();
    h.at += 60_000;
    h.send({ type: 'pause', at: h.at, by: 'bob' });
    h.tick(3_600_000);
    assert.deepEqual([h.state.phase, h.state.stepIndex, h.state.pause?.reason], ['Paused', 1, 'manual'], 'an hour later: still held at step 2');
    h.send({ type: 'resume', at: h.at, by: 'bob' });
    assert.equal(h.state.stepIndex, 2);
    assert.equal(h.state.phase, 'Progressing');
    assert.equal(h.last('assign').devices.length, 18);
  });

  it('two resumes of the hold at once (each naming the pause it saw) lift the hold once: the second is refused, and the timed pause goes on', () => {
    const h = timed();
    h.at += 60_000;
    h.send({ type: 'pause', at: h.at, by: 'bob' });
    const held = h.state.pause!.since;
    h.at += 1000;
    h.send({ type: 'resume', at: h.at, by: 'alice', pausedSince: held });
    assert.deepEqual([h.state.phase, h.state.stepIndex, h.state.pause?.reason], ['Paused', 1, 'step'], 'the timed pause again');
    const before = h.state;
    assert.throws(
      () => h.send({ type: 'resume', at: h.at, by: 'bob', pausedSince: held }),
      (error: unknown) =>
        error instanceof RolloutCommandError &&
        error.message === `rollout ro-test is no longer in the pause of ${new Date(held).toISOString()} (it is paused since ${new Date(h.at).toISOString()}: step 2 pauses until 2026-01-01T00:10:00.000Z); not resumed again`,
    );
    assert.equal(h.state, before, 'nothing changed');
    // Named for the pause it is in now, a resume ends the step (as one without a name would).
    h.send({ type: 'resume', at: h.at, by: 'bob', pausedSince: h.state.pause!.since });
    assert.equal(h.state.stepIndex, 2);
    // A resume naming a pause of a rollout no longer paused says so.
    assert.throws(() => h.send({ type: 'resume', at: h.at, by: 'bob', pausedSince: held }), /is no longer in the pause of .* \(it is Progressing, not paused\); not resumed again$/);
  });

  it('an untimed pause step is still refused: it already waits for a human', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 100 }]));
    h.deliver(h.last('assign'));
    const before = h.state;
    assert.throws(() => h.send({ type: 'pause', at: h.at, by: 'bob' }), (error: unknown) => error instanceof RolloutCommandError && error.message === 'rollout ro-test is already paused (step 2 pauses until resumed)');
    assert.equal(h.state, before);
  });
});

describe('rollout state machine: offline devices', () => {
  const spec = specOf([{ setWeight: 50 }, { setWeight: 100 }], { offline: { initialBackoff: '5s', maxBackoff: '20s', maxAttempts: 4 } });

  it('devices that run out of attempts together are one decision naming them, not a line each', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 100 }], { offline: { maxAttempts: 1 } }), fleetOf(30));
    const assign = h.last('assign');
    const offline = assign.devices.filter((_, i) => i % 3 !== 0);
    h.deliver(assign, (id) => (offline.includes(id) ? 'offline' : 'delivered'));
    const lines = h.decisions.filter((d) => d.verdict === 'unreachable');
    assert.deepEqual(
      lines.map((d) => d.message),
      [`20 devices are unreachable after 1 attempt (2 as candidate): ${offline.join(', ')}; they converge when they come back`],
    );
    // One device alone keeps its own line.
    const one = new ReducerHarness(specOf([{ setWeight: 100 }], { offline: { maxAttempts: 1 } }), fleetOf(3));
    const only = one.last('assign');
    one.deliver(only, (id) => (id === only.devices[1] ? 'offline' : 'delivered'));
    assert.deepEqual(one.decisions.filter((d) => d.verdict === 'unreachable').map((d) => d.message), [`device ${only.devices[1]} is unreachable after 1 attempt (2 as candidate); it converges when it comes back`]);
  });

  it('retries with exponential backoff, then counts the device unreachable and moves on', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const first = h.last('assign');
    const offline = first.devices[0]!;
    h.deliver(first, (id) => (id === offline ? 'offline' : 'delivered'));
    assert.equal(h.state.stepIndex, 0, 'waits for the offline device');
    const retries: number[] = [];
    let clock = h.at;
    for (let i = 0; i < 3; i += 1) {
      const wake = nextWakeAt(h.state)!;
      retries.push(wake - clock);
      h.at = wake;
      const [retry] = h.send({ type: 'tick', at: wake });
      assert.ok(retry && retry.kind === 'assign');
      assert.deepEqual(retry.devices, [offline]);
      clock = wake;
      h.deliver(retry, () => 'offline');
    }
    assert.deepEqual(retries, [5_000, 10_000, 20_000]);
    assert.equal(h.state.devices.find((d) => d.id === offline)?.delivery, 'unreachable');
    assert.equal(h.state.stepIndex, 1, 'an unreachable device does not block the rollout');
    assert.ok(h.decisions.some((d) => d.verdict === 'unreachable' && d.message.includes(offline)));
  });

  it('pauses, without failing or marking the candidate, when no device of a step\'s cohort could be sent it; goes on when one comes back, or at resume', () => {
    const pilot = specOf([{ devices: ['dev-01', 'dev-02'] }, { setWeight: 100 }], { offline: { maxAttempts: 1 } });
    for (const via of ['back online', 'resume'] as const) {
      const h = new ReducerHarness(pilot, fleetOf(5));
      const assign = h.last('assign');
      const actions = h.deliver(assign, () => 'offline');
      assert.equal(h.state.phase, 'Paused', via);
      assert.equal(h.state.pause?.reason, 'unreachable');
      assert.match(h.state.pause!.message, /^no device of step 1's cohort received the candidate \(2 unreachable\); the step goes on when one of them has it/);
      assert.equal(h.state.outcome, undefined, 'no verdict');
      assert.deepEqual(actions.filter((action) => action.kind === 'markVersion' || action.kind === 'revert'), [], 'the candidate is not marked failed, nothing is reverted');
      assert.equal(h.state.stepIndex, 0);
      let again: RolloutAction;
      if (via === 'back online') {
        [again] = h.send({ type: 'deviceOnline', at: h.at, deviceId: 'dev-02' }) as [RolloutAction];
        assert.deepEqual(again.kind === 'assign' && again.devices, ['dev-02']);
      } else {
        [again] = h.send({ type: 'resume', at: h.at, by: 'ops' }).filter((action) => action.kind === 'assign') as [RolloutAction];
        assert.deepEqual(again.kind === 'assign' && [...again.devices].sort(), ['dev-01', 'dev-02'], 'resume sends it to every unreachable device of the cohort');
      }
      assert.equal(h.state.phase, via === 'resume' ? 'Progressing' : 'Paused', 'paused until a device has it, unless resumed');
      h.deliver(again, (id) => (id === 'dev-02' ? 'delivered' : 'offline'));
      assert.equal(h.state.phase, 'Progressing', via);
      assert.equal(h.state.stepIndex, 1, 'the step went on');
      if (via === 'back online') {
        assert.ok(h.decisions.some((d) => d.kind === 'pause' && d.verdict === 'resumed' && /a device of step 1's cohort has the candidate/.test(d.message)), 'the pause ended on its own');
      }
    }
  });

  it('an operator\'s pause on a rollout paused as unreachable holds it: a device that comes back does not move it on; resume then does, re-sending to those still away', () => {
    const pilot = specOf([{ devices: ['dev-01', 'dev-02'] }, { setWeight: 100 }], { offline: { maxAttempts: 1 } });
    const h = new ReducerHarness(pilot, fleetOf(5));
    h.deliver(h.last('assign'), () => 'offline');
    assert.equal(h.state.pause?.reason, 'unreachable');
    h.send({ type: 'pause', at: h.at, by: 'ops' });
    assert.deepEqual([h.state.phase, h.state.pause?.reason], ['Paused', 'manual']);
    const [back] = h.send({ type: 'deviceOnline', at: h.at, deviceId: 'dev-02' }) as [RolloutAction];
    h.deliver(back, () => 'delivered');
    assert.deepEqual([h.state.phase, h.state.pause?.reason, h.state.stepIndex], ['Paused', 'manual', 0], 'held');
    h.send({ type: 'resume', at: h.at, by: 'ops' });
    assert.deepEqual([h.state.phase, h.state.stepIndex], ['Progressing', 1]);

    // Held by hand while nothing of the cohort has the candidate: resume sends it again at once.
    const held = new ReducerHarness(pilot, fleetOf(5));
    held.deliver(held.last('assign'), () => 'offline');
    held.send({ type: 'pause', at: held.at, by: 'ops' });
    const resent = held.send({ type: 'resume', at: held.at, by: 'ops' }).filter((action) => action.kind === 'assign');
    assert.deepEqual(resent.flatMap((action) => (action.kind === 'assign' ? [...action.devices].sort() : [])), ['dev-01', 'dev-02']);
  });

  it('a cohort that all left the fleet pauses saying so: no promise that one comes back', () => {
    const pilot = specOf([{ devices: ['dev-01', 'dev-02'] }, { setWeight: 100 }], { offline: { maxAttempts: 1 } });
    const h = new ReducerHarness(pilot, fleetOf(5));
    const assign = h.last('assign');
    h.send({ type: 'actionResult', at: h.at, actionId: assign.id, devices: assign.devices.map((deviceId) => ({ deviceId, outcome: 'gone' as const, reason: 'the device is revoked' })) });
    assert.equal(h.state.pause?.reason, 'unreachable');
    assert.equal(h.state.pause?.message, "every device of step 1's cohort left the fleet (2); none can receive the candidate: promote --step goes on without them, rollback reverts");
    assert.equal(h.state.outcome, undefined);
  });

  // A device revoked while its cohort waited for it (paused unreachable): the pause went on saying
  // "the step goes on when one of them has it", as if it could come back; revoked, it is tried once
  // more (the revocation's hook), found gone, and the pause says the cohort left the fleet.
  it('a cohort device revoked while the rollout waits for it to come back is tried once more and counted gone: the pause says the cohort left', () => {
    const pilot = specOf([{ devices: ['dev-01'] }, { setWeight: 100 }], { offline: { maxAttempts: 1 } });
    const h = new ReducerHarness(pilot, fleetOf(3));
    h.deliver(h.last('assign'), () => 'offline');
    assert.equal(h.state.pause?.reason, 'unreachable');
    assert.match(h.state.pause?.message ?? '', /the step goes on when one of them has it/);
    const [again] = h.send({ type: 'deviceOnline', at: h.at, deviceId: 'dev-01', cause: 'revoked' }) as [RolloutAction];
    assert.ok(again && again.kind === 'assign' && again.devices.includes('dev-01'), JSON.stringify(again));
    assert.ok(h.decisions.some((d) => d.message === 'device dev-01 was revoked (it left the fleet); its delivery of 2 as candidate is tried once more, to count it gone'), JSON.stringify(h.decisions.map((d) => d.message)));
    h.send({ type: 'actionResult', at: h.at, actionId: again.id, devices: [{ deviceId: 'dev-01', outcome: 'gone' as const, reason: 'the device is revoked' }] });
    assert.equal(h.state.pause?.message, "every device of step 1's cohort left the fleet (1); none can receive the candidate: promote --step goes on without them, rollback reverts");
  });

  it('never lets offline devices block a rollback, and re-sends to a device that comes back', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const first = h.last('assign');
    h.deliver(first);
    const actions = h.send({ type: 'rollback', at: h.at, by: 'ops' });
    assert.equal(h.state.phase, 'RolledBack', 'rolled back at once');
    const revert = actions.find((a) => a.kind === 'revert')!;
    const away = first.devices[0]!;
    h.deliver(revert, (id) => (id === away ? 'offline' : 'delivered'));
    for (let i = 0; i < 3; i += 1) {
      const wake = nextWakeAt(h.state)!;
      h.at = wake;
      const retry = h.send({ type: 'tick', at: wake }).find((a) => a.kind === 'revert')!;
      h.deliver(retry, () => 'offline');
    }
    assert.equal(h.state.devices.find((d) => d.id === away)?.delivery, 'unreachable');
    assert.equal(nextWakeAt(h.state), undefined);
    const back = h.send({ type: 'deviceOnline', at: h.at, deviceId: away });
    assert.equal(back.length, 1);
    assert.ok(back[0]!.kind === 'revert' && back[0]!.devices[0]!.deviceId === away);
    h.deliver(back[0]!);
    assert.equal(h.state.devices.find((d) => d.id === away)?.delivery, 'delivered');
  });

  it('ignores results of superseded actions', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const assign = h.last('assign');
    h.send({ type: 'rollback', at: h.at, by: 'ops' });
    h.deliver(assign);
    assert.ok(h.state.devices.filter((d) => d.touched).every((d) => d.delivery === 'pending'), 'the old assignment result does not count for the revert');
  });

  it('fails the rollout when a device refuses the candidate', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const assign = h.last('assign');
    h.send({ type: 'actionResult', at: h.at, actionId: assign.id, devices: assign.devices.map((deviceId, i) => ({ deviceId, outcome: i === 0 ? 'refused' : 'delivered', reason: 'signature does not verify' })) });
    assert.equal(h.state.phase, 'Failed');
    assert.match(h.state.outcome!.reason, /refused the candidate: signature does not verify/);
  });

  it('fails the rollout when a device refuses the candidate late, during the analysis it was unreachable for', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 50 }, analysisStep()], { offline: { maxAttempts: 1 } }), fleetOf(4));
    const assign = h.last('assign');
    const late = assign.devices[0]!;
    h.deliver(assign, (deviceId) => (deviceId === late ? 'offline' : 'delivered'));
    assert.equal(h.state.stepStage, 'analyzing', 'the analysis started without the unreachable device');
    h.send({ type: 'deviceOnline', at: h.at, deviceId: late });
    h.send({ type: 'actionResult', at: h.at, actionId: h.last('assign').id, devices: [{ deviceId: late, outcome: 'refused', reason: 'signature does not verify' }] });
    assert.equal(h.state.phase, 'Failed');
    assert.match(h.state.outcome!.reason, new RegExp(`device ${late} refused the candidate: signature does not verify`));
    assert.ok(h.last('revert').devices.some((device) => device.deviceId === late), 'the late device goes back to its baseline too');
  });

  it('fails the rollout when a device that installed the candidate cannot benchmark it; a stale or foreign answer changes nothing', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const assign = h.last('assign');
    h.deliver(assign);
    const device = assign.devices[0]!;
    assert.equal(h.state.phase, 'Progressing');
    // An answer to another assignment (an older rollout's, a direct one) is not this rollout's.
    h.send({ type: 'benchmarkFailed', at: h.at, deviceId: device, actionId: 'someone-else', reason: 'x' });
    h.send({ type: 'benchmarkFailed', at: h.at, deviceId: 'not-a-target', actionId: assign.id, reason: 'x' });
    assert.equal(h.state.phase, 'Progressing');
    const reverts = h.send({ type: 'benchmarkFailed', at: h.at, deviceId: device, actionId: assign.id, reason: 'holdout has no column "f9" that the model needs' });
    assert.equal(h.state.phase, 'Failed');
    assert.match(h.state.outcome!.reason, /device dev-\d+ could not benchmark the candidate: holdout has no column "f9"/);
    assert.deepEqual(reverts.map((action) => action.kind).sort(), ['markVersion', 'revert']);
    assert.ok(h.decisions.some((d) => d.kind === 'device' && d.verdict === 'refused' && d.message.includes(device)));
    // Once failed, a late answer is history.
    assert.deepEqual(h.send({ type: 'benchmarkFailed', at: h.at, deviceId: assign.devices[1]!, actionId: assign.id, reason: 'y' }), []);

    // The answer can come before the delivery is recorded (the device benchmarks at once), or
    // answer an earlier send of the candidate than the one the rollout waits on: it counts all the same.
    const early = new ReducerHarness(spec, fleetOf(4), '1', 'ro-early');
    const first = early.last('assign');
    assert.equal(early.state.devices.find((d) => d.id === first.devices[0])?.delivery, 'pending');
    early.send({ type: 'benchmarkFailed', at: early.at, deviceId: first.devices[0]!, actionId: first.id, reason: 'holdout has no column "f9"' });
    assert.equal(early.state.phase, 'Failed');
    const other = new ReducerHarness(spec, fleetOf(4), '1', 'ro-other');
    other.send({ type: 'benchmarkFailed', at: other.at, deviceId: other.last('assign').devices[0]!, actionId: first.id, reason: 'another rollout\'s assignment' });
    assert.equal(other.state.phase, 'Progressing');
  });

  it('a device whose own model failed its benchmark (failedRole active) does not fail the rollout: the decision log says so, nothing is reverted or marked', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const assign = h.last('assign');
    h.deliver(assign);
    const device = assign.devices[0]!;
    const reason = 'the active model 1: holdout.csv: line 4, column "f0": "NaN" is not a finite number';
    const actions = h.send({ type: 'benchmarkFailed', at: h.at, deviceId: device, actionId: assign.id, reason, failedRole: 'active' });
    assert.equal(h.state.phase, 'Progressing');
    assert.deepEqual(actions, []);
    const said = h.decisions.filter((d) => d.kind === 'device' && d.verdict === 'no-benchmark');
    assert.equal(said.length, 1);
    assert.equal(said[0]!.message, `device ${device} could not benchmark 2 beside its active model: ${reason}; that says nothing of the candidate (the device's holdout or its own model is at fault): the analysis goes on without this device`);
    assert.equal(h.state.devices.find((d) => d.id === device)?.delivery, 'delivered', 'it still carries the candidate');
    // The candidate's own failure on another device still fails it.
    h.send({ type: 'benchmarkFailed', at: h.at, deviceId: assign.devices[1]!, actionId: assign.id, reason: 'the candidate model 2: no column "f9"', failedRole: 'candidate' });
    assert.equal(h.state.phase, 'Failed');
  });

  it('activating everywhere: refusals are named in the outcome; no device taking the candidate fails the rollout', () => {
    const activate = (outcome: (deviceId: string) => 'delivered' | 'offline' | 'refused', id: string) => {
      const h = new ReducerHarness(specOf([{ setWeight: 50 }]), fleetOf(4), '1', id);
      const pilot = h.last('assign');
      h.deliver(pilot);
      const activation = h.last('assign');
      assert.equal(activation.role, 'active');
      h.send({
        type: 'actionResult',
        at: h.at,
        actionId: activation.id,
        devices: activation.devices.map((deviceId) => ({ deviceId, outcome: outcome(deviceId), reason: 'no space left for the model' })),
      });
      return { h, pilot, activation };
    };
    // One refusal among deliveries: the others run it, so the candidate is production; the refusal is said.
    const some = activate((deviceId) => (deviceId === 'dev-02' ? 'refused' : 'delivered'), 'ro-some');
    assert.equal(some.h.state.phase, 'Completed');
    assert.equal(some.h.state.outcome!.reason, 'promoted to 100% of 4 devices (3 run it; 1 refused and keep their model (dev-02: no space left for the model))');
    assert.equal(some.h.last('markVersion').status, 'production');

    // Every device refusing (or refusing and unreachable): nothing runs the candidate, so it is not production.
    const none = activate((deviceId) => (deviceId === 'dev-03' ? 'offline' : 'refused'), 'ro-none');
    // The offline device is retried first; once it is declared unreachable the stage settles.
    for (let attempt = 0; attempt < 10 && none.h.state.phase === 'Progressing'; attempt += 1) {
      none.h.at += 3_600_000;
      for (const action of none.h.send({ type: 'tick', at: none.h.at })) if (action.kind === 'assign') none.h.deliver(action, () => 'offline');
    }
    assert.equal(none.h.state.phase, 'Failed');
    assert.match(none.h.state.outcome!.reason, /^no device took the candidate when it was activated everywhere \(3 refused \(dev-0[124]: no space left for the model\), 1 unreachable\)$/);
    assert.equal(none.h.last('markVersion').status, 'failed');
    const revert = none.h.last('revert');
    assert.deepEqual(revert.devices.map((d) => d.deviceId).sort(), ['dev-01', 'dev-02', 'dev-03', 'dev-04'], 'every touched device goes back to its baseline');

    // Every device unreachable (a broker outage): no verdict on the candidate. It is production, and
    // the devices converge when they are back.
    const away = activate(() => 'offline', 'ro-away');
    for (let attempt = 0; attempt < 10 && away.h.state.phase === 'Progressing'; attempt += 1) {
      away.h.at += 3_600_000;
      for (const action of away.h.send({ type: 'tick', at: away.h.at })) if (action.kind === 'assign') away.h.deliver(action, () => 'offline');
    }
    assert.equal(away.h.state.phase, 'Completed');
    assert.equal(away.h.state.outcome!.reason, 'promoted to 100% of 4 devices (0 run it; 4 unreachable; they converge when back online)');
  });

  it('goes on without a device that left the fleet (revoked): that is no verdict on the candidate', () => {
    const h = new ReducerHarness(spec, fleetOf(4));
    const assign = h.last('assign');
    const gone = assign.devices[0]!;
    h.send({ type: 'actionResult', at: h.at, actionId: assign.id, devices: assign.devices.map((deviceId) => (deviceId === gone ? { deviceId, outcome: 'gone', reason: 'the device is revoked' } : { deviceId, outcome: 'delivered' })) });
    assert.notEqual(h.state.phase, 'Failed');
    assert.equal(h.state.stepIndex, 1, 'the step is settled and the rollout moved on');
    const device = h.state.devices.find((d) => d.id === gone)!;
    assert.deepEqual([device.delivery, device.reason], ['unreachable', 'the device is revoked']);
    assert.ok(h.decisions.some((d) => d.message === `device ${gone} left the fleet (the device is revoked); the rollout goes on without it`));
  });

  it('promoted with a device that left the fleet: the outcome says it left, not that it converges when back online', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 50 }]), fleetOf(4), '1', 'ro-left');
    h.deliver(h.last('assign'));
    const activation = h.last('assign');
    const gone = activation.devices[0]!;
    const away = activation.devices[1]!;
    h.send({ type: 'actionResult', at: h.at, actionId: activation.id, devices: activation.devices.map((deviceId) => (deviceId === gone ? { deviceId, outcome: 'gone', reason: 'the device is revoked' } : { deviceId, outcome: deviceId === away ? 'offline' : 'delivered' })) });
    for (let attempt = 0; attempt < 10 && h.state.phase === 'Progressing'; attempt += 1) {
      h.at += 3_600_000;
      for (const action of h.send({ type: 'tick', at: h.at })) if (action.kind === 'assign') h.deliver(action, () => 'offline');
    }
    assert.equal(h.state.phase, 'Completed');
    assert.equal(h.state.outcome!.reason, 'promoted to 100% of 4 devices (2 run it; 1 unreachable; they converge when back online; 1 left the fleet)');
  });
});

describe('rollout state machine: late answers', () => {
  it('"no candidate to drop" answered late counts a device back only when it runs its baseline; with no baseline (a state stored by an older version), whatever it runs', () => {
    const h = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }]), fleetOf(2));
    h.deliver(h.last('assign'));
    h.send({ type: 'abort', at: h.at, by: 'ops' });
    const revert = h.last('revert');
    h.deliver(revert, () => 'offline');
    const [first] = h.state.devices;
    assert.equal(first!.delivery, 'retrying');
    const answer = (version: string) => ({ deviceId: first!.id, actionId: revert.id, outcome: 'delivered' as const, runs: { model: 'wine', version } });
    assert.equal(awaitsLateAnswer(h.state, answer('2')), false, 'it runs the candidate: the answer to its retained baseline decides');
    assert.equal(awaitsLateAnswer(h.state, answer(first!.baseline!)), true);
    assert.equal(awaitsLateAnswer(h.state, { ...answer('2'), runs: undefined }), true, 'any other answer');
    const noBaseline = { ...h.state, devices: h.state.devices.map((device, i) => (i === 0 ? { ...device, baseline: null } : device)) };
    assert.equal(awaitsLateAnswer(noBaseline, answer('2')), true, 'no baseline: only the candidate was dropped, and it is');
  });
});

describe('rollout state machine: a large fleet', () => {
  it('takes a rollout over 20,000 devices to production; decision messages stay bounded (timings: npm run bench:scale)', () => {
    const devices = Array.from({ length: 20_000 }, (_, i) => ({ id: `device-${String(i).padStart(6, '0')}`, labels: { site: 'north' }, baseline: '1' }));
    const h = new ReducerHarness(specOf([{ setWeight: 5 }, { setWeight: 50 }]), devices);
    h.deliver(h.last('assign'));
    h.deliver(h.last('assign'));
    const activation = h.last('assign');
    assert.equal(activation.devices.length, 20_000);
    h.deliver(activation);
    assert.equal(h.state.phase, 'Completed');
    const assigning = h.decisions.filter((d) => d.verdict === 'assigning');
    assert.match(assigning.at(-1)!.message, /: device-\d{6}(, device-\d{6}){19} and 8980 more$/);
    assert.ok(h.decisions.every((d) => d.message.length < 2000), 'no decision lists every device');
  });

  it('a step naming thousands of devices is described with the first 20 of them; a rollout of every device says so once', () => {
    const devices = Array.from({ length: 3000 }, (_, i) => ({ id: `device-${String(i).padStart(6, '0')}`, labels: { site: 'north' }, baseline: '1' }));
    const h = new ReducerHarness(specOf([{ devices: devices.map((d) => d.id) }, { setWeight: 100 }], { target: {} }), devices);
    assert.match(h.decisions[0]!.message, /devices \(every device\) in 2 steps/);
    assert.doesNotMatch(h.decisions[0]!.message, /\(\(/);
    const step = h.decisions.find((d) => d.kind === 'step')!;
    assert.match(step.message, /devices device-\d{6}(, device-\d{6}){19} and 2980 more/);
    assert.ok(h.decisions.every((d) => d.message.length < 2000), `no decision lists every device: ${h.decisions.map((d) => d.message.length)}`);
  });
});
