import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { waitFor } from '../../server/demo/rest-client.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import { runCli } from '../helpers/cli.ts';
import { engineMissing } from '../helpers/engines.ts';
import { mosquittoBinary } from '../helpers/mosquitto.ts';
import { prometheusBinary } from '../helpers/prometheus.ts';
import { ADMIN_TOKEN, AcceptanceFleet, DEVICES, acceptanceSpec, trainFleet, type TrainedFleet } from './fleet-fixture.ts';

/**
 * Issue #5 acceptance: ODF2NNA candidates shipped to real agents over MQTT with staged rollouts
 * decided by metrics, against a real `fleetprune server` process, once on the embedded broker and
 * once on a private Mosquitto with analyses answered by a private Prometheus.
 */

type Decision = { kind: string; verdict: string; stepIndex: number; message: string; measurement?: any };

let root: string;
let trained: TrainedFleet;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'fleetprune-acceptance-'));
  trained = await trainFleet(join(root, 'models'));
});
after(() => rm(root, { recursive: true, force: true }));

async function scenario(t: TestContext, fleet: AcceptanceFleet, manualRollback: 'rest' | 'cli', expectProvider: string): Promise<void> {
  const { good, overPruned, general } = fleet.versions;
  assert.deepEqual([general, good, overPruned], ['1', '2', '3']);
  const pilot = fleet.pilot;
  assert.equal(pilot.length, 4);

  await t.test('e. too few samples: Inconclusive pauses the rollout, never promotes it', async (t) => {
    const before = await fleet.agentOutcomes();
    // The first rollout of a scenario: agents fetch and benchmark the candidate for the first
    // time, so the analysis waits longer before it counts the pilot's reports.
    const id = await fleet.startRollout(acceptanceSpec(good, { minSamples: pilot.length + 1, initialDelay: '8s' }));
    t.after(async () => {
      // Whatever failed above, leave no unfinished rollout blocking the next scenarios.
      if (!(await fleet.rollout(id)).terminal) await fleet.api.post(`/rollouts/${id}/rollback?reason=cleanup`);
    });
    const paused = await fleet.waitRollout(id, 'paused as inconclusive', (r) => r.phase === 'Paused' && r.pause?.reason === 'inconclusive');
    assert.equal(paused.stepIndex, 1, 'paused at the pilot analysis');
    const decisions = paused.decisions as Decision[];
    const inconclusive = decisions.filter((d) => d.kind === 'measurement' && d.verdict === 'Inconclusive');
    assert.ok(inconclusive.length > 0, 'an Inconclusive measurement is logged');
    assert.ok(inconclusive.some((d) => d.measurement.samples === pilot.length), `samples: ${inconclusive.map((d) => d.measurement.samples)}`);
    // It stays paused: give the controller several intervals to (wrongly) move on.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const still = await fleet.rollout(id);
    assert.equal(still.phase, 'Paused');
    assert.equal(still.stepIndex, 1);
    assert.equal((still.decisions as Decision[]).filter((d) => d.kind === 'promotion').length, 0);
    assert.equal(await fleet.production(), general, 'the production alias did not move');
    const devices = await fleet.devices();
    assert.ok(devices.every((d) => d.active?.version === general), 'nobody runs the candidate as active');
    assert.deepEqual(devices.filter((d) => d.candidate?.version === good).map((d) => d.id).sort(), [...pilot].sort(), 'only the pilot carries the candidate');
    await fleet.api.post(`/rollouts/${id}/rollback?reason=inconclusive`);
    await fleet.waitRollout(id, 'rolled back', (r) => r.phase === 'RolledBack');
    await waitCandidateCleared(fleet);
    // The rollback also retains each pilot device's baseline as active (under a second id), which
    // the device answers `activated` (already its active model) after the drop's answer that
    // cleared its candidate: counted here, not in the next rollout's "activated it once".
    await waitFor('the pilot answered its retained baseline', async () => {
      const outcomes = await fleet.agentOutcomes();
      return pilot.every((device) => (outcomes.get(device)!.activated ?? 0) - (before.get(device)!.activated ?? 0) === 1) ? true : undefined;
    }, 20_000, 100);
  });

  await t.test('a+d. the ODF2NNA candidate goes through every step to 100%; kill -9 of the server mid-rollout, the restart finishes it, no step twice', async () => {
    const before = await fleet.agentOutcomes();
    const changesBefore = fleet.agentModelChanges();
    const id = await fleet.startRollout(acceptanceSpec(good));
    // Killed while analysing half the fleet (step 3), after the 50% assignment.
    const mid = await fleet.waitRollout(id, 'analysing the 50% step', (r) => r.stepIndex === 3 && r.stepStage !== 'assigning' && r.analysis !== null);
    await fleet.killAndRestart();
    const resumed = await fleet.rollout(id);
    assert.ok(resumed.stepIndex >= mid.stepIndex, `resumed at step ${resumed.stepIndex}, killed at ${mid.stepIndex}`);
    // Generous: the agents reconnect to the restarted server with their backoff (up to 30 s) and the rollout waits for them.
    const done = await fleet.waitRollout(id, 'completed', (r) => r.phase === 'Completed' && r.pendingActions.length === 0, 120_000);

    assert.equal(done.weight, 100);
    assert.equal(done.outcome?.status, 'production');
    assert.deepEqual(done.steps.map((s) => s.status), ['done', 'done', 'done', 'done', 'done']);
    assert.ok(done.steps[1]!.measurements > 0 && done.steps[3]!.measurements > 0, 'both analyses measured');
    const decisions = done.decisions as Decision[];
    const analyses = decisions.filter((d) => d.kind === 'analysis' && d.verdict !== 'started');
    assert.deepEqual(analyses.map((d) => [d.stepIndex, d.verdict]), [[1, 'Successful'], [3, 'Successful']], JSON.stringify(analyses));
    const measured = decisions.filter((d) => d.kind === 'measurement');
    assert.ok(measured.every((d) => d.measurement.provider === expectProvider), `providers: ${[...new Set(measured.map((d) => d.measurement.provider))]}`);
    assert.ok(measured.some((d) => d.measurement.metric === 'accuracy' && d.verdict === 'Successful'));
    assert.deepEqual(decisions.filter((d) => d.kind === 'promotion').map((d) => d.verdict), ['activating', 'production']);

    // No step twice: each step started and completed once, each assignment issued once.
    const steps = (verdict: string) => decisions.filter((d) => d.kind === 'step' && d.verdict === verdict).map((d) => d.stepIndex);
    assert.deepEqual(steps('started'), [0, 1, 2, 3, 4]);
    assert.deepEqual(steps('completed'), [0, 1, 2, 3, 4]);
    const assignments = decisions.filter((d) => d.kind === 'assignment');
    const perStep = new Map<string, number>();
    for (const d of assignments) perStep.set(`${d.stepIndex}:${d.message}`, (perStep.get(`${d.stepIndex}:${d.message}`) ?? 0) + 1);
    assert.ok([...perStep.values()].every((n) => n === 1), `an assignment was logged twice: ${JSON.stringify([...perStep])}`);
    // …and on the devices: each installed the candidate once and activated it once. An agent
    // reports an activation with the state that records it, and counts it only once the model is
    // swapped in: on a loaded machine the rollout can complete a moment before the last count.
    const activatedSince = (outcomes: Map<string, Record<string, number>>) =>
      [...outcomes].every(([device, counts]) => (counts.activated ?? 0) - (before.get(device)!.activated ?? 0) >= 1);
    const after = await waitFor('every agent counted its activation', async () => {
      const outcomes = await fleet.agentOutcomes();
      return activatedSince(outcomes) ? outcomes : undefined;
    }, 30_000, 100).catch(() => fleet.agentOutcomes());
    const why = `(outcome: ${done.outcome?.reason}; device decisions: ${JSON.stringify(decisions.filter((d) => d.kind === 'device').map((d) => d.message))})`;
    // An assignment the restarted server sent again (its answer lost with the killed server) is
    // answered again without a download or a swap: the model changes are what must happen once.
    const changes = fleet.agentModelChanges();
    for (const [device, counts] of after) {
      const was = before.get(device)!;
      assert.ok((counts.installed ?? 0) - (was.installed ?? 0) >= 1, `${device} answered its candidate assignment ${why}`);
      assert.ok((counts.activated ?? 0) - (was.activated ?? 0) >= 1, `${device} answered its activation ${why}`);
      if (process.env.FLEETPRUNE_LOG_LEVEL) continue; // the agents' log goes to stderr then, not counted
      const [now, then] = [changes.get(device)!, changesBefore.get(device)!];
      assert.equal(now.downloaded - then.downloaded, 1, `${device} downloaded and installed the candidate once ${why}`);
      assert.equal(now.activating - then.activating, 1, `${device} activated it once ${why}`);
    }

    const devices = await fleet.waitActiveEverywhere(good);
    assert.equal(devices.filter((d) => d.active?.version === good).length, DEVICES);
    assert.equal(await fleet.production(), good, 'the production alias moved to the candidate');
    fleetState.promoted = id;
  });

  await t.test(`c. manual rollback (${manualRollback === 'rest' ? 'REST' : 'CLI'}) after full promotion returns every device to the baseline`, async () => {
    const id = fleetState.promoted;
    assert.ok(id, 'needs the promoted rollout');
    if (manualRollback === 'rest') {
      await fleet.api.post(`/rollouts/${id}/rollback?reason=${encodeURIComponent('operator: manual rollback')}`);
    } else {
      const result = await runCli(['rollout', 'rollback', id, '--reason', 'operator: manual rollback'], { FLEETPRUNE_SERVER: fleet.grpcTarget, FLEETPRUNE_TOKEN: ADMIN_TOKEN });
      assert.equal(result.code, 0, result.stderr);
    }
    // A rollback after completion ends the (terminal) rollout in RolledBack, on which waitRollout
    // throws: wait here until its reverts are all sent too (the next scenario's start is refused
    // while they are: "still sending its devices their models").
    const deadline = Date.now() + 30_000;
    let rolledBack = await fleet.rollout(id);
    while (!(rolledBack.phase === 'RolledBack' && rolledBack.pendingActions.length === 0)) {
      if (Date.now() > deadline) assert.fail(`rollout ${id} did not settle rolled back: ${rolledBack.phase}, pending ${JSON.stringify(rolledBack.pendingActions)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      rolledBack = await fleet.rollout(id);
    }
    assert.match(rolledBack.outcome?.reason ?? '', /manual rollback/);
    const devices = await fleet.waitActiveEverywhere(general);
    assert.ok(devices.every((d) => d.active?.version === general));
    assert.equal(await fleet.production(), general, 'the previous production version is restored');
  });

  await t.test('b. the over-pruned candidate (ε 0.9) fails accuracy at the pilot and is rolled back automatically', async () => {
    const before = await fleet.agentOutcomes();
    const id = await fleet.startRollout(acceptanceSpec(overPruned));
    const failed = await waitTerminal(fleet, id);
    assert.equal(failed.phase, 'Failed', failed.outcome?.reason);
    assert.equal(failed.stepIndex, 1, 'stopped at the pilot analysis');
    assert.match(failed.outcome?.reason ?? '', /accuracy/);
    const decisions = failed.decisions as Decision[];
    const verdict = decisions.find((d) => d.kind === 'measurement' && d.measurement.metric === 'accuracy' && d.verdict === 'Failed');
    assert.ok(verdict, 'the accuracy check failed');
    const evidence = verdict.measurement.relative ?? verdict.measurement.evidence ?? verdict.measurement;
    assert.match(verdict.message, /candidate accuracy [\d.]+ points vs baseline [\d.]+ points .* on 4 devices \(Wilcoxon signed-rank W\+=[\d.]+ p=[\d.]+, Mann-Whitney U=[\d.]+ p=[\d.]+; p=[\d.]+ for both\)/);
    assert.ok(evidence, 'the measurement carries its numbers');
    const failure = decisions.find((d) => d.kind === 'failure');
    assert.ok(failure && /accuracy/.test(failure.message) && /Mann-Whitney/.test(failure.message), failure?.message);
    assert.equal(decisions.filter((d) => d.kind === 'step' && d.verdict === 'started' && d.stepIndex >= 2).length, 0, 'never reached 50%');

    const devices = await fleet.waitActiveEverywhere(general);
    await waitCandidateCleared(fleet);
    assert.ok(devices.every((d) => d.active?.version === general), 'pilot devices back on the baseline');
    const after = await fleet.agentOutcomes();
    for (const [device, counts] of after) {
      const installed = (counts.installed ?? 0) - (before.get(device)!.installed ?? 0);
      assert.equal(installed, pilot.includes(device) ? 1 : 0, `${device}: the candidate only reached the pilot`);
    }
    assert.equal(failed.outcome?.status, 'failed', 'the candidate is marked failed');
    assert.equal(await fleet.production(), general);
  });
}

const fleetState: { promoted?: string } = {};

function waitTerminal(fleet: AcceptanceFleet, id: string) {
  return fleet.waitRollout(id, 'decided', () => false, 60_000).catch(async (error) => {
    const current = await fleet.rollout(id);
    if (current.terminal) return current;
    const last = (current.decisions as Decision[]).slice(-8).map((d) => `${d.kind}/${d.verdict}: ${d.message}`);
    throw new Error(`${errorMessage(error)} (${current.phase} at step ${current.stepIndex}, ${current.stepStage}; last decisions: ${last.join(' | ')})`);
  });
}

async function waitCandidateCleared(fleet: AcceptanceFleet): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const devices = await fleet.devices();
    if (devices.every((d) => d.candidate === null || d.candidate === undefined)) return;
    if (Date.now() > deadline) throw new Error(`candidates not removed: ${devices.filter((d) => d.candidate).map((d) => d.id)}`);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}


test('acceptance: embedded broker, builtin provider, server process killed with -9 mid-rollout', { timeout: 300_000 }, async (t) => {
  fleetState.promoted = undefined;
  const fleet = await AcceptanceFleet.start({ trained, dir: join(root, 'embedded') });
  t.after(() => fleet.close());
  await scenario(t, fleet, 'rest', 'builtin');
});

test('acceptance: private Mosquitto (--mqtt-url, --mosquitto-dir, pid file) and a real Prometheus scraping the server every second', { timeout: 300_000 }, async (t) => {
  const mosquitto = mosquittoBinary();
  if (!mosquitto) return engineMissing(t, 'Mosquitto', 'no mosquitto executable on PATH');
  const prometheus = prometheusBinary();
  if (!prometheus) return engineMissing(t, 'Prometheus', 'no prometheus executable (PROMETHEUS_BIN, /usr/bin/prometheus or PATH)');
  fleetState.promoted = undefined;
  const fleet = await AcceptanceFleet.start({ trained, dir: join(root, 'mosquitto'), mosquittoBinary: mosquitto, prometheusBinary: prometheus });
  t.after(() => fleet.close());
  await scenario(t, fleet, 'cli', 'prometheus');
});
