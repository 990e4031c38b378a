import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import type { MetricProvider } from '../../server/metricproviders/metric-provider.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { ANSWER_BATCH_MS } from '../../server/rollout/answer-batcher.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import { rolloutDetail } from '../../server/rollout/rollout-views.ts';
import type { RolloutCommit, RolloutRepository } from '../../server/rollout/rollout-repository.ts';
import type { RolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { DecisionLogEntry, RolloutAction, RolloutState } from '../../server/rollout/rollout-state.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { fleetOf, specOf, STAGED_STEPS, T0 } from './rollout-fixtures.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';
import { freePort } from '../helpers/engines.ts';
import { misbehavingServer, vectorAnswer } from '../helpers/misbehaving-http.ts';

interface Rig {
  scheduler: ManualScheduler;
  repository: RolloutRepository;
  fleet: InMemoryFleet;
  models: InMemoryModelStatus;
  controller: RolloutController;
  registry: Registry;
  metrics: RolloutMetrics;
}

function rig(options: { provider?: MetricProvider; prometheus?: MetricProvider; logger?: Logger; devices?: ReturnType<typeof fleetOf>; repository?: RolloutRepository; scheduler?: ManualScheduler; fleet?: InMemoryFleet; models?: InMemoryModelStatus } = {}): Rig {
  const scheduler = options.scheduler ?? new ManualScheduler(T0);
  const repository = options.repository ?? new InMemoryRolloutRepository();
  const fleet = options.fleet ?? new InMemoryFleet(options.devices ?? fleetOf(20));
  const models = options.models ?? new InMemoryModelStatus('1');
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const controller = new RolloutController({
    repository,
    fleet,
    models,
    providers: new MetricProviderResolver({ builtin: options.provider ?? new ScriptedProvider([[0.97]]), ...(options.prometheus ? { prometheus: options.prometheus } : {}) }),
    ...(options.logger ? { logger: options.logger } : {}),
    scheduler,
    metrics,
    actionRetryMs: 1000,
    newId: () => 'ro-test',
  });
  return { scheduler, repository, fleet, models, controller, registry, metrics };
}

/** Lets time pass in 1-second ticks, waiting for the controller after each. */
async function drive(r: Rig, ms: number): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += 1000) {
    await r.scheduler.advance(1000);
    await r.controller.idle();
  }
}

async function driveUntil(r: Rig, done: (state: RolloutState) => boolean, limitMs = 3_600_000, id = 'ro-test'): Promise<RolloutState> {
  for (let elapsed = 0; elapsed <= limitMs; elapsed += 5000) {
    const state = await r.controller.status(id);
    if (done(state)) return state;
    await drive(r, 5000);
  }
  throw new Error(`not done after ${limitMs} ms: ${JSON.stringify((await r.controller.status(id)).phase)}`);
}

const goodMetric = { name: 'accuracy', interval: '1m', count: 2, provider: { builtin: { query: 'acc{model="{{args.model}}",cohort=~"{{args.cohort}}"}' } }, successCondition: 'result[0] >= 0.9' };
const stagedSpec = (): RolloutSpec => specOf(STAGED_STEPS.map((step) => ('analysis' in (step as object) ? { analysis: { metrics: [goodMetric] } } : step)));

describe('rollout controller', () => {
  it('promotes a good candidate through every step to production, logging and exporting every decision', async () => {
    const provider = new ScriptedProvider([[0.97]]);
    const r = rig({ provider });
    await r.controller.start(stagedSpec(), { by: 'alice' });
    const state = await driveUntil(r, (s) => s.phase === 'Completed');
    assert.equal(state.outcome?.status, 'production');
    assert.equal(r.models.production, '2');
    for (const device of r.fleet.devices.values()) {
      assert.equal(device.active, '2');
      assert.deepEqual(device.effects, ['candidate:2', 'active:2']);
    }
    const decisions = await r.controller.decisions('ro-test');
    const measurements = decisions.filter((d) => d.kind === 'measurement');
    assert.equal(measurements.length, 6, 'three analyses × count 2');
    const first = measurements[0]!.measurement!;
    assert.match(first.queries.query!, /^acc\{model="wine",cohort=~"dev-\d\d"\}$/, 'the pilot cohort is one device');
    assert.deepEqual(first.value, [0.97]);
    assert.equal(first.thresholds.success, 0.9);
    assert.equal(first.phase, 'Successful');
    const text = await r.registry.metrics();
    assert.match(text, /fleetprune_rollout_step\{rollout="ro-test",model="wine",version="2"\} 7/);
    assert.match(text, /fleetprune_analysis_value\{rollout="ro-test",model="wine",version="2",metric="accuracy"\} 0.97/);
    assert.match(text, /fleetprune_analysis_threshold\{rollout="ro-test",model="wine",version="2",metric="accuracy",condition="success"\} 0.9/);
    assert.match(text, /fleetprune_rollout_decisions_total\{rollout="ro-test",model="wine",version="2",kind="measurement",metric="accuracy",verdict="Successful"\} 6/);
    assert.match(text, /fleetprune_rollout_decisions_total\{[^}]*kind="promotion",metric="",verdict="production"\} 1/);
    r.controller.stop();
  });

  it('recover() writes no takeover entry (a takeover that fails after it would write one at each election); noteTakeover() writes one per resumed rollout, naming the node', async () => {
    const repository = new InMemoryRolloutRepository();
    const scheduler = new ManualScheduler(T0);
    const fleet = new InMemoryFleet(fleetOf(20));
    const models = new InMemoryModelStatus('1');
    const first = rig({ repository, scheduler, fleet, models });
    await first.controller.start(specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 100 }]), { by: 'alice' });
    await driveUntil(first, (s) => s.phase === 'Paused');
    first.controller.stop();
    const takeovers = async () => (await repository.decisions('ro-test')).filter((d) => d.kind === 'takeover');

    const second = rig({ repository, scheduler, fleet, models });
    const at = scheduler.now().toISOString();
    const resumed = await second.controller.recover();
    assert.deepEqual(resumed, ['ro-test']);
    assert.deepEqual(await takeovers(), [], 'nothing written before the takeover succeeded');
    // The new controller drives it at once (a broker connection waited for meanwhile): the entry,
    // written once the takeover is done, says how the rollout was when it was picked up.
    await second.controller.resume('ro-test', 'carol');
    const before = await driveUntil(second, (state) => state.phase === 'Completed');
    await second.controller.noteTakeover(resumed, 'node-b');
    const written = await takeovers();
    assert.deepEqual(written.map((d) => [d.verdict, d.stepIndex, d.message]), [['driven', before.stepIndex, `server node node-b took over the rollout at ${at} (a restart, a new leader, or this server leading again after it lost the lead) in phase Paused`]]);
    // The entry's step is the rollout's as it is written; its time and phase, the pick-up's.
    // (but the decision log's sequence, which numbers the entry)
    const { seq: seqAfter, ...after } = await second.controller.status('ro-test');
    const { seq: seqBefore, ...rest } = before;
    assert.deepEqual(after, rest, 'the entry changes nothing else');
    assert.equal(seqAfter, seqBefore + 1);
    second.controller.stop();
  });

  it('a restarted controller exports the same rollout series: a finished rollout\'s decision counters and timestamps, and an unfinished one\'s, as before the restart', async () => {
    const repository = new InMemoryRolloutRepository();
    const scheduler = new ManualScheduler(T0);
    const fleet = new InMemoryFleet(fleetOf(20));
    const models = new InMemoryModelStatus('1');
    const first = rig({ repository, scheduler, fleet, models });
    await first.controller.start(stagedSpec(), { by: 'alice' });
    await driveUntil(first, (s) => s.phase === 'Completed');
    // A second one, paused half way: unfinished.
    await first.controller.start(specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 100 }], { candidateVersion: '3' }), { by: 'alice', id: 'ro-open' });
    await driveUntil(first, (s) => s.phase === 'Paused', 60_000, 'ro-open');
    const series = async (registry: Registry) => (await registry.metrics()).split('\n').filter((line) => line.startsWith('fleetprune_rollout_') || line.startsWith('fleetprune_analysis_')).sort();
    const before = await series(first.registry);
    first.controller.stop();
    assert.ok(before.some((line) => /fleetprune_rollout_decision_timestamp_seconds\{rollout="ro-test",[^}]*kind="promotion"/.test(line)), 'the finished rollout\'s promotion is exported');

    const second = rig({ repository, scheduler, fleet, models });
    await second.controller.recover();
    await second.controller.idle();
    assert.deepEqual(await series(second.registry), before);
    second.controller.stop();
  });

  it('a commit that fails (a busy or lost database) delays the rollout, never wedges it: ticks, action results and measurements are retried', async () => {
    /** The real in-memory repository, whose commits fail once at chosen turns. */
    class FlakyRepository extends InMemoryRolloutRepository {
      commits = 0;
      failures = 0;
      override async commit(id: string, commit: RolloutCommit): Promise<number> {
        if (++this.commits % 2 === 0) {
          this.failures++;
          throw new Error('database is locked');
        }
        return super.commit(id, commit);
      }
    }
    const repository = new FlakyRepository();
    const r = rig({ repository, logger: pino({ level: 'silent' }) });
    await r.controller.start(specOf([...STAGED_STEPS.slice(0, 2).map((step) => ('analysis' in (step as object) ? { analysis: { metrics: [goodMetric] } } : step)), { pause: { duration: '1m' } }, { setWeight: 100 }]), { by: 'alice' });
    const state = await driveUntil(r, (s) => s.phase === 'Completed', 2 * 3_600_000);
    assert.ok(repository.failures >= 6, `commits failed ${repository.failures} times`);
    assert.equal(state.outcome?.status, 'production');
    for (const device of r.fleet.devices.values()) assert.equal(device.active, '2');
    const decisions = await r.controller.decisions('ro-test');
    const started = decisions.filter((d) => d.kind === 'step' && d.verdict === 'started').map((d) => d.stepIndex);
    assert.deepEqual(started, [...new Set(started)], 'no step started twice');
    assert.equal(decisions.filter((d) => d.kind === 'measurement').length, 2, 'the analysis took its two measurements, no more');
    r.controller.stop();
  });

  it('fails an over-pruned candidate at the pilot on the built-in accuracy check and reverts every pilot device', async () => {
    const history = new InMemoryReportHistory();
    const devices = fleetOf(20, (i): Record<string, string> => (i < 4 ? { pilot: 'true' } : {}));
    const r = rig({ provider: new BuiltinProvider({ history }), devices });
    // Each device benchmarks its models every 20 s: the candidate (ε 0.9, over-pruned) side by side with its active model.
    const report = () => {
      for (const device of r.fleet.devices.values()) {
        const ts = r.scheduler.now();
        const base = { model: 'wine', cohort: 'pilot', deviceId: device.id, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 100, ts };
        if (device.active) history.add({ ...base, version: device.active, role: 'active', accuracy: 0.95 + (device.id.charCodeAt(5) % 3) * 0.005 });
        if (device.candidate) history.add({ ...base, version: device.candidate, role: 'candidate', accuracy: 0.61 + (device.id.charCodeAt(5) % 3) * 0.01 });
      }
      r.scheduler.schedule(20_000, report);
    };
    report();
    const spec = specOf([{ selector: { matchLabels: { pilot: 'true' } } }, { analysis: { templates: [{ templateName: 'fleetprune-accuracy' }] } }, { setWeight: 25 }, { setWeight: 100 }]);
    await r.controller.start(spec, { by: 'alice' });
    const state = await driveUntil(r, (s) => s.phase === 'Failed');
    assert.equal(state.stepIndex, 1);
    assert.match(state.outcome!.reason, /^analysis failed at step 2: accuracy: 1 failed measurement > failureLimit 0: accuracy: candidate accuracy \d+(\.\d+)? points vs baseline 9\d(\.\d+)? points \(medians\); per-device margin candidate − bound \(baseline − 0\.5 points\): median -\d+(\.\d+)? points, mean -\d+(\.\d+)? points, 4 outside tolerance \(worst dev-\d\d: -\d+(\.\d+)? points past its bound\) on 4 devices \(Wilcoxon signed-rank W\+=0 p=0\.06250, Mann-Whitney U=0 p=0\.01421; p=0\.02843 for both\): significantly worse at confidence 0\.95$/);
    await drive(r, 5000);
    for (const device of r.fleet.devices.values()) {
      const pilot = device.labels.pilot === 'true';
      assert.deepEqual(device.effects, pilot ? ['candidate:2', `revert:${device.id === 'dev-01' ? '0.9' : '1'}`] : [], device.id);
      assert.equal(device.candidate, null);
    }
    assert.equal(r.models.statuses.get('2')?.status, 'failed');
    assert.equal(r.models.statuses.get('2')?.reason, state.outcome!.reason);
    const measurement = (await r.controller.decisions('ro-test')).find((d) => d.kind === 'measurement')!.measurement!;
    assert.equal(measurement.relative?.candidate.length, 4);
    assert.ok(measurement.relative!.p < 0.05);
    r.controller.stop();
  });

  it('a relative check does not count reports from before the rollout started (an earlier rollout of the same version)', async () => {
    const history = new InMemoryReportHistory();
    const devices = fleetOf(8, (i): Record<string, string> => (i < 4 ? { pilot: 'true' } : {}));
    const r = rig({ provider: new BuiltinProvider({ history }), devices });
    // An earlier rollout of wine 2, a minute before this one: the pilot benchmarked it, and it was aborted.
    const earlier = new Date(r.scheduler.now().getTime() - 60_000);
    for (const device of r.fleet.devices.values()) {
      if (device.labels.pilot !== 'true') continue;
      const base = { model: 'wine', cohort: 'pilot', deviceId: device.id, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 100, ts: earlier };
      history.add({ ...base, version: '1', role: 'active', accuracy: 0.9 }, { ...base, version: '2', role: 'candidate', accuracy: 0.92 });
    }
    const spec = specOf([{ selector: { matchLabels: { pilot: 'true' } } }, { analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy', window: '5m' } }] } }, { setWeight: 100 }]);
    await r.controller.start(spec, { by: 'alice' });
    const paused = await driveUntil(r, (s) => s.phase === 'Paused' || s.phase === 'Completed');
    assert.equal(paused.phase, 'Paused', 'not promoted on the earlier rollout\'s evidence');
    assert.match(paused.pause!.message, /too few samples: 0 devices with both/);
    r.controller.stop();
  });

  it('pauses on too few samples (Inconclusive) instead of promoting, until a human acts', async () => {
    const history = new InMemoryReportHistory();
    const r = rig({ provider: new BuiltinProvider({ history }) });
    const spec = specOf([{ setWeight: 5 }, { analysis: { templates: [{ templateName: 'fleetprune-accuracy' }] } }, { setWeight: 100 }]);
    await r.controller.start(spec, { by: 'alice' });
    const paused = await driveUntil(r, (s) => s.phase === 'Paused');
    assert.equal(paused.pause?.reason, 'inconclusive');
    assert.match(paused.pause!.message, /too few samples: 0 devices with both candidate and baseline accuracy reports/);
    await drive(r, 600_000);
    const still = await r.controller.status('ro-test');
    assert.equal(still.phase, 'Paused');
    assert.equal(still.stepIndex, 1);
    assert.equal([...r.fleet.devices.values()].filter((d) => d.candidate === '2').length, 1, 'nothing beyond the pilot');
    await r.controller.rollback('ro-test', 'bob', 'not enough data');
    await drive(r, 2000);
    assert.equal((await r.controller.status('ro-test')).phase, 'RolledBack');
    assert.equal([...r.fleet.devices.values()].filter((d) => d.candidate === '2').length, 0);
    r.controller.stop();
  });

  it('rolls every device back with one call after full promotion, restoring the previous production version', async () => {
    const r = rig();
    await r.controller.start(specOf([{ setWeight: 50 }, { setWeight: 100 }]), { by: 'alice' });
    await driveUntil(r, (s) => s.phase === 'Completed');
    assert.equal(r.models.production, '2');
    await r.controller.rollback('ro-test', 'carol', 'customer complaints');
    await drive(r, 2000);
    const state = await r.controller.status('ro-test');
    assert.equal(state.phase, 'RolledBack');
    assert.equal(r.models.production, '1');
    assert.equal(r.models.statuses.get('2')?.status, 'rolled-back');
    for (const device of r.fleet.devices.values()) assert.equal(device.active, device.id === 'dev-01' || device.id === 'dev-06' || device.id === 'dev-11' || device.id === 'dev-16' ? '0.9' : '1');
    const rollback = (await r.controller.decisions('ro-test')).find((d) => d.kind === 'rollback')!;
    assert.equal(rollback.by, 'carol');
    assert.match(rollback.message, /rolled back by carol: customer complaints; every device goes back to its baseline \(previous production 1\)/);
    r.controller.stop();
  });

  it('a rollback after full promotion also takes back the devices that run the candidate outside the rollout, to the restored production, and re-sends to them like to its own', async () => {
    const r = rig();
    await r.controller.start(specOf([{ setWeight: 100 }]), { by: 'alice' });
    await driveUntil(r, (s) => s.phase === 'Completed');
    // After the promotion an operator gave production (2) to two devices of another site, one of
    // them offline now; a third device there runs 1, a fourth another model's version.
    const outsider = (id: string, active: string | null, online = true) =>
      r.fleet.devices.set(id, { id, labels: { site: 'south' }, active, candidate: null, online, effects: [] });
    outsider('south-1', '2');
    outsider('south-2', '2', false);
    outsider('south-3', '1');
    outsider('south-4', null);
    const state = await r.controller.rollback('ro-test', 'carol', 'bad in the field');
    await drive(r, 2000);
    assert.equal(state.phase, 'RolledBack');
    assert.deepEqual(state.devices.filter((device) => device.outside).map((device) => [device.id, device.baseline]), [['south-1', '1'], ['south-2', '1']]);
    assert.deepEqual(r.fleet.devices.get('south-1')!.effects, ['revert:1']);
    assert.deepEqual([r.fleet.devices.get('south-2')!.active, r.fleet.devices.get('south-3')!.effects, r.fleet.devices.get('south-4')!.effects], ['2', [], []]);
    for (const device of [...r.fleet.devices.values()].filter((d) => d.labels.site === 'north')) assert.equal(device.active, ['dev-01', 'dev-06', 'dev-11', 'dev-16'].includes(device.id) ? '0.9' : '1');
    const rollback = (await r.controller.decisions('ro-test')).find((d) => d.kind === 'rollback')!;
    assert.match(rollback.message, /\(previous production 1\); 2 devices that run 2 outside the rollout go to 1 too \(south-1, south-2\)$/);
    // The offline one is the rollout's to bring back, like its own devices.
    r.fleet.devices.get('south-2')!.online = true;
    await r.controller.deviceOnline('south-2');
    await drive(r, 2000);
    assert.equal(r.fleet.devices.get('south-2')!.active, '1');
    r.controller.stop();
  });

  it('a rollback that raced the promotion (read before it, dispatched after) still takes back the devices that run the candidate outside the rollout', async () => {
    // The rollback's first read of the rollout is from before the promotion: it lists no fleet.
    class StaleOnce extends InMemoryRolloutRepository {
      stale: Awaited<ReturnType<InMemoryRolloutRepository['load']>> | undefined;
      override async load(id: string) {
        const stale = this.stale;
        this.stale = undefined;
        return stale ?? super.load(id);
      }
    }
    const repository = new StaleOnce();
    const r = rig({ repository });
    await r.controller.start(specOf([{ setWeight: 100 }]), { by: 'alice' });
    const before = await repository.load('ro-test');
    await driveUntil(r, (s) => s.phase === 'Completed');
    r.fleet.devices.set('south-1', { id: 'south-1', labels: { site: 'south' }, active: '2', candidate: null, online: true, effects: [] });
    repository.stale = before;
    const state = await r.controller.rollback('ro-test', 'carol');
    await drive(r, 2000);
    assert.deepEqual(state.devices.filter((device) => device.outside).map((device) => device.id), ['south-1']);
    assert.equal(r.fleet.devices.get('south-1')!.active, '1');
    r.controller.stop();
  });

  it('a device taken back by the rollback of an older rollout, also in a newer one that was aborted: the older one re-sends to it when it is back', async () => {
    const r = rig({ devices: [...fleetOf(4), { id: 'south-1', labels: { site: 'south' }, baseline: '1' }] });
    await r.controller.start(specOf([{ setWeight: 100 }]), { by: 'alice', id: 'ro-one' });
    await driveUntil(r, (s) => s.phase === 'Completed', undefined, 'ro-one');
    // south-1 is given 2 by hand; a rollout of 3 to it is aborted, which puts it back on 2.
    const south = r.fleet.devices.get('south-1')!;
    south.active = '2';
    await r.controller.start(specOf([{ setWeight: 100 }, { pause: {} }], { candidateVersion: '3', target: { matchLabels: { site: 'south' } } }), { by: 'alice', id: 'ro-two' });
    await driveUntil(r, (s) => s.phase === 'Paused', undefined, 'ro-two');
    await r.controller.abort('ro-two', 'bob');
    await drive(r, 2000);
    assert.equal(south.active, '2');
    // south-1 goes offline; the first rollout is rolled back, and gives up on it for now.
    south.online = false;
    await r.controller.rollback('ro-one', 'carol');
    await drive(r, 120_000);
    const deliveryOf = async () => (await r.controller.status('ro-one')).devices.find((device) => device.id === 'south-1')?.delivery;
    assert.equal(await deliveryOf(), 'unreachable');
    south.online = true;
    await r.controller.deviceOnline('south-1');
    await drive(r, 2000);
    assert.equal(south.active, '1', 'the older rollout, rolled back last, speaks for south-1');
    assert.equal(await deliveryOf(), 'delivered');
    r.controller.stop();
  });

  it('a device not back after a rollback, also in a newer rollout aborted since: rolled back again, the older rollout speaks for it when it is back', async () => {
    const r = rig({ devices: fleetOf(4) });
    const x = r.fleet.devices.get('dev-02')!;
    await r.controller.start(specOf([{ setWeight: 100 }]), { by: 'alice', id: 'ro-one' });
    await driveUntil(r, (s) => s.phase === 'Completed', undefined, 'ro-one');
    x.online = false;
    await r.controller.rollback('ro-one', 'carol');
    await drive(r, 300_000);
    // A newer rollout of 3 over the same devices, x still offline; aborted.
    await r.controller.start(specOf([{ setWeight: 100 }, { pause: {} }], { candidateVersion: '3' }), { by: 'bob', id: 'ro-two' });
    await drive(r, 300_000);
    await r.controller.abort('ro-two', 'bob');
    await drive(r, 300_000);
    // The operator rolls the first one back again: x is sent its baseline once more.
    await r.controller.rollback('ro-one', 'carol', 'again');
    await drive(r, 300_000);
    x.online = true;
    await r.controller.deviceOnline('dev-02');
    await drive(r, 5000);
    assert.equal(x.active, '1', `the last decision speaks for dev-02: ${x.effects.join(', ')}`);
    r.controller.stop();
  });

  it('a promoted rollout with no previous production names the devices running the candidate outside it, with nothing to send them; a fleet that cannot be listed does not stop the rollback of its own devices', async () => {
    for (const broken of [false, true]) {
      const r = rig({ models: new InMemoryModelStatus(broken ? '1' : null) });
      await r.controller.start(specOf([{ setWeight: 100 }]), { by: 'alice' });
      await driveUntil(r, (s) => s.phase === 'Completed');
      r.fleet.devices.set('south-1', { id: 'south-1', labels: { site: 'south' }, active: '2', candidate: null, online: true, effects: [] });
      if (broken) r.fleet.listDevices = async () => { throw new Error('the device table is locked'); };
      const state = await r.controller.rollback('ro-test', 'carol');
      await drive(r, 2000);
      assert.equal(state.phase, 'RolledBack');
      assert.equal(state.devices.some((device) => device.outside), false);
      assert.equal(r.fleet.devices.get('south-1')!.active, '2');
      assert.equal(r.fleet.devices.get('dev-02')!.active, '1', 'the rollout\'s own devices go back');
      const rollback = (await r.controller.decisions('ro-test')).find((d) => d.kind === 'rollback')!;
      assert.match(rollback.message, broken
        ? /\(previous production 1\); the devices outside the rollout could not be listed \(the device table is locked\): any of them running 2 stay on it$/
        : /\(previous production none\); 1 device that runs 2 outside the rollout is left on it: there is no previous production to send it \(south-1\)$/);
      r.controller.stop();
    }
  });

  it('an action that keeps failing is retried on its own backoff, not in a storm, shows in a metric, and goes through once the fleet answers', async () => {
    const r = rig();
    let down = true;
    let calls = 0;
    const flaky = <A extends unknown[], R>(real: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
      calls += 1;
      if (down) throw new Error('the broker is down');
      return real(...args);
    };
    r.fleet.assign = flaky(r.fleet.assign.bind(r.fleet));
    r.fleet.revert = flaky(r.fleet.revert.bind(r.fleet));
    await r.controller.start(specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 100 }]), { by: 'alice' });
    await drive(r, 1000);
    await r.controller.rollback('ro-test', 'carol', 'bad');
    await r.controller.idle();
    // A minute of both actions failing, with ticks and other dispatches draining meanwhile: each
    // is retried after 1, 2, 4, 8, 16 and 32 s (a storm doubled its retries at every round).
    for (let second = 1; second <= 60; second++) {
      await drive(r, 1000);
      assert.ok(calls <= 16, `${calls} fleet calls after ${second} s`); // checked each second: a storm fails fast
    }
    assert.ok(r.scheduler.pendingCount <= 4, `${r.scheduler.pendingCount} timers pending`);
    const failing = async () => (await r.registry.getSingleMetric('fleetprune_rollout_failing_actions')!.get()).values.find((v) => v.labels.rollout === 'ro-test')?.value;
    assert.equal(await failing(), 2, 'the assignment and the revert are failing');
    down = false;
    await drive(r, 120_000);
    assert.equal(await failing(), 0);
    assert.deepEqual((await r.repository.load('ro-test'))!.pendingActions, []);
    for (const device of r.fleet.devices.values()) assert.equal(device.active, device.id === 'dev-01' || device.id === 'dev-06' || device.id === 'dev-11' || device.id === 'dev-16' ? '0.9' : '1');
    r.controller.stop();
  });

  it('a rollback again after an outage runs the revert stuck in its backoff at once, logged once; once every device is back, and while the revert is on its way, it is refused', async () => {
    const r = rig({ devices: fleetOf(10) });
    await r.controller.start(specOf([{ setWeight: 30 }, { pause: {} }, { setWeight: 100 }]), { by: 'alice' });
    await drive(r, 2000);
    const cohort = (await r.controller.status('ro-test')).cohort;
    assert.equal(cohort.length, 3);

    // The store or broker side of the fleet fails every call for 11 minutes: the revert's backoff grows to minutes.
    r.fleet.alive = false;
    await r.controller.rollback('ro-test', 'bob');
    await drive(r, 11 * 60_000);
    const stuck = await r.repository.load('ro-test');
    assert.deepEqual(stuck!.state.devices.filter((d) => d.touched).map((d) => d.delivery), ['pending', 'pending', 'pending']);
    assert.equal(rolloutDetail(stuck!, []).notBackOnBaseline, 3, 'the dashboard keeps "Roll back" on');
    const failing = async () => (await r.registry.getSingleMetric('fleetprune_rollout_failing_actions')!.get()).values.find((v) => v.labels.rollout === 'ro-test')?.value;
    assert.equal(await failing(), 1, 'the revert is failing');

    r.fleet.alive = true;
    const logged = (await r.controller.decisions('ro-test')).length;
    const again = await r.controller.rollback('ro-test', 'carol', 'still on the candidate');
    assert.equal(again.phase, 'RolledBack');
    await drive(r, 1000);
    for (const id of cohort) assert.equal(r.fleet.devices.get(id)!.candidate, null, `${id} is back within a second of the rollback again`);
    const back = await r.controller.status('ro-test');
    assert.deepEqual(back.devices.filter((d) => d.touched).map((d) => d.delivery), ['delivered', 'delivered', 'delivered']);
    await drive(r, 1000);
    assert.deepEqual((await r.repository.load('ro-test'))!.pendingActions, [], 'the superseded revert ran at once too, not minutes later');
    assert.equal(await failing(), 0);
    const added = (await r.controller.decisions('ro-test')).slice(logged);
    assert.deepEqual(
      added.filter((d) => d.kind === 'rollback').map((d) => `${d.by}: ${d.message}`),
      [`carol: rolled back again by carol (still on the candidate): 3 devices not back on their baseline are sent it again (${cohort.join(', ')}): 3 whose revert failed and was waiting to be retried`],
      'the repeat is logged once',
    );

    // Every device back: refused, and nothing changes.
    const settled = await r.repository.revisionOf('ro-test');
    await assert.rejects(r.controller.rollback('ro-test', 'dave'), /^RolloutCommandError: rollout ro-test is already rolled back: every device it touched is back on its baseline; nothing to roll back$/);
    assert.equal(await r.repository.revisionOf('ro-test'), settled);
    r.controller.stop();

    // A revert on its way (held, not failed), as when an operator clicks twice: the second rollback is refused, nothing is recorded.
    const held = rig({ devices: fleetOf(10) });
    await held.controller.start(specOf([{ setWeight: 30 }, { pause: {} }, { setWeight: 100 }]), { by: 'alice' });
    await drive(held, 2000);
    let release!: () => void;
    held.fleet.revertsHeld = new Promise((resolve) => (release = resolve));
    await held.controller.rollback('ro-test', 'bob');
    const loggedFirst = (await held.controller.decisions('ro-test')).length;
    await assert.rejects(held.controller.rollback('ro-test', 'carol'), new RegExp(`^RolloutCommandError: rollout ro-test is already rolled back: its revert is on its way to 3 devices \\(${cohort.join(', ')}\\); nothing to send again$`));
    assert.equal((await held.controller.decisions('ro-test')).length, loggedFirst, 'nothing logged');
    assert.equal((await held.repository.load('ro-test'))!.pendingActions.filter((a) => a.kind === 'revert').length, 1, 'nothing sent again');
    release();
    await drive(held, 1000);
    held.controller.stop();
  });

  it('an operator\'s pause during a timed pause step holds the rollout: the timer does not move it on; resume ends the step once its time is over', async () => {
    const r = rig({ devices: fleetOf(10) });
    await r.controller.start(specOf([{ setWeight: 10 }, { pause: { duration: '10m' } }, { setWeight: 100 }]), { by: 'alice' });
    await drive(r, 60_000);
    const paused = await r.controller.pause('ro-test', 'bob');
    assert.deepEqual([paused.phase, paused.stepIndex, paused.pause?.reason], ['Paused', 1, 'manual']);
    assert.match(paused.pause!.message, /^paused by bob during step 2's timed pause \(10m, 9m left\): held until resumed; resume continues the timed pause until /);
    await drive(r, 15 * 60_000);
    const held = await r.controller.status('ro-test');
    assert.deepEqual([held.phase, held.stepIndex, held.pause?.reason], ['Paused', 1, 'manual'], '15 minutes later: still held');
    assert.equal([...r.fleet.devices.values()].filter((d) => d.active === '2' || d.candidate === '2').length, 1, 'only the first step\'s device has the candidate');
    await assert.rejects(r.controller.pause('ro-test', 'carol'), /already paused \(paused by bob during step 2's timed pause/);
    await r.controller.resume('ro-test', 'bob');
    const done = await driveUntil(r, (s) => s.phase === 'Completed', 60_000);
    assert.equal(done.stepIndex, 3);
    r.controller.stop();
  });

  it('a controller stopped (its server deposed) while a commit is in flight does not bring back the series the reset dropped', async () => {
    let gate: Promise<void> | undefined;
    class GatedRepository extends InMemoryRolloutRepository {
      override async commit(...args: Parameters<InMemoryRolloutRepository['commit']>) {
        await gate;
        return super.commit(...args);
      }
    }
    const r = rig({ repository: new GatedRepository() });
    await r.controller.start(stagedSpec(), { by: 'alice' });
    await r.controller.idle();
    const series = async () => (await r.registry.metrics()).split('\n').filter((line) => line.includes('rollout="ro-test"')).length;
    assert.ok((await series()) > 0, 'series while leading');
    let release!: () => void;
    gate = new Promise((resolve) => (release = resolve));
    const pausing = r.controller.pause('ro-test', 'bob'); // its commit is now in flight
    await new Promise((resolve) => setTimeout(resolve, 10));
    // rollout-module's deposed handler
    r.controller.stop();
    r.metrics.reset();
    release();
    await pausing;
    await r.controller.idle();
    assert.equal(await series(), 0, 'the deposed server exports no frozen rollout series');
  });

  it('late answers: one that lands after the action gave up waiting but before its result is recorded still counts; many are checked with one load and recorded in one commit', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The device's answer comes just after the fleet's wait for it timed out: the action reports it offline.
    class TimedOutFleet extends InMemoryFleet {
      override async assign(command: Parameters<InMemoryFleet['assign']>[0]) {
        const results = await super.assign(command);
        if (command.role !== 'candidate') return results;
        await held;
        return results.map((result) => ({ deviceId: result.deviceId, outcome: 'offline' as const }));
      }
    }
    const loads = { count: 0 };
    class CountingRepository extends InMemoryRolloutRepository {
      override load(id: string) {
        loads.count += 1;
        return super.load(id);
      }
    }
    const devices = fleetOf(40);
    const r = rig({ fleet: new TimedOutFleet(devices), devices, repository: new CountingRepository() });
    // With one attempt, a cohort whose every device is offline fails the rollout: unless their answers count.
    await r.controller.start(specOf([{ setWeight: 100 }, { pause: {} }], { offline: { initialBackoff: '2s', maxBackoff: '8s', maxAttempts: 1 } }), { by: 'alice' });
    const started = await r.controller.status('ro-test');
    const actionId = started.devices[0]!.actionId!;
    assert.ok(started.devices.every((device) => device.actionId === actionId && device.delivery === 'pending'));
    loads.count = 0;
    await Promise.all(devices.map((device) => r.controller.deviceAnswered(device.id, actionId, { outcome: 'delivered' })));
    await r.controller.deviceAnswered('dev-01', 'ro-other-a1', { outcome: 'refused', reason: 'another rollout' }); // not this rollout's action: ignored
    await r.scheduler.advance(ANSWER_BATCH_MS);
    for (let i = 0; i < 100 && (await r.controller.status('ro-test')).devices.some((device) => device.delivery === 'pending'); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    // (The checks above load it too, a few times.) One load per answer would be 40 or more.
    assert.ok(loads.count < 10, `${loads.count} loads of the rollout for 40 late answers`);
    release();
    await r.controller.idle();
    const state = await r.controller.status('ro-test');
    assert.deepEqual([state.phase, state.stepIndex], ['Paused', 1], state.outcome?.reason);
    assert.ok(state.devices.every((device) => device.delivery === 'delivered'));
    const decisions = await r.controller.decisions('ro-test');
    assert.equal(decisions.filter((decision) => decision.kind === 'device' && decision.verdict === 'delivered').length, 40);
    assert.equal(decisions.filter((decision) => decision.kind === 'device' && decision.verdict !== 'delivered').length, 0, 'no device counted unreachable or refused');
  });

  it('retries an offline device with backoff, counts it unreachable, finishes, and converges it when it returns', async () => {
    const loads = { count: 0 };
    class CountingRepository extends InMemoryRolloutRepository {
      override load(id: string) {
        loads.count += 1;
        return super.load(id);
      }
    }
    const repository = new CountingRepository();
    const r = rig({ devices: fleetOf(4), repository });
    r.fleet.devices.get('dev-03')!.online = false;
    const spec = specOf([{ setWeight: 100 }], { offline: { initialBackoff: '2s', maxBackoff: '8s', maxAttempts: 4 } });
    await r.controller.start(spec, { by: 'alice' });
    await drive(r, 1000);
    assert.equal((await r.controller.status('ro-test')).stepIndex, 0, 'waiting for dev-03');
    const state = await driveUntil(r, (s) => s.phase === 'Completed', 120_000);
    assert.equal(state.devices.find((d) => d.id === 'dev-03')?.delivery, 'unreachable');
    assert.match(state.outcome!.reason, /1 unreachable; they converge when back online/);
    assert.match(await r.registry.metrics(), /fleetprune_rollout_unreachable_devices\{rollout="ro-test",model="wine",version="2"\} 1/);
    const retries = r.fleet.calls.length;
    assert.equal(retries, 1 + 3 + 1, 'first assignment, three retries, activation');
    // A device that waits for nothing costs no commit when it reconnects, and reconnects while
    // the rollout stands still read its state once (a fleet reconnecting after a restart).
    const revision = (await r.repository.load('ro-test'))!.revision;
    await r.controller.deviceOnline('dev-01');
    const before = loads.count;
    for (const device of ['dev-02', 'dev-04', 'dev-01']) await r.controller.deviceOnline(device);
    assert.equal(loads.count - before, 0, 'no state read while the revision stands');
    assert.equal((await repository.load('ro-test'))!.revision, revision);
    r.fleet.devices.get('dev-03')!.online = true;
    await r.controller.deviceOnline('dev-03');
    await drive(r, 1000);
    assert.equal(r.fleet.devices.get('dev-03')!.active, '2');
    assert.equal((await r.controller.status('ro-test')).devices.find((d) => d.id === 'dev-03')?.delivery, 'delivered');
    r.controller.stop();
  });

  it("fails the rollout whose candidate a device could not benchmark, and reverts the cohort; other answers change nothing", async () => {
    const r = rig({ devices: fleetOf(4) });
    await r.controller.start(specOf([{ setWeight: 50 }, { pause: {} }]), { by: 'alice' });
    await drive(r, 1000);
    const state = await r.controller.status('ro-test');
    assert.equal(state.phase, 'Paused');
    const [device] = state.cohort;
    const actionId = state.devices.find((d) => d.id === device)!.actionId!;
    const revision = (await r.repository.load('ro-test'))!.revision;
    await r.controller.benchmarkFailed(device!, 'another-assignment', 'x');
    await r.controller.benchmarkFailed('dev-unknown', actionId, 'x');
    assert.equal((await r.repository.load('ro-test'))!.revision, revision, 'not this rollout\'s assignment: no commit');
    await r.controller.benchmarkFailed(device!, actionId, 'the candidate model 2 gives non-finite outputs for 3 of 30 holdout rows');
    const failed = await driveUntil(r, (s) => s.phase === 'Failed' && s.devices.every((d) => !d.touched || d.delivery === 'delivered'));
    assert.match(failed.outcome!.reason, /could not benchmark the candidate: the candidate model 2 gives non-finite outputs/);
    for (const id of failed.cohort) assert.equal(r.fleet.devices.get(id)!.candidate, null, `${id} dropped the candidate`);
    r.controller.stop();
  });

  it('reports bad commands and unknown rollouts as user errors', async () => {
    const r = rig();
    await assert.rejects(r.controller.resume('nope', 'x'), /no rollout with id "nope"/);
    await r.controller.start(specOf([{ setWeight: 50 }, { pause: {} }]), { by: 'alice' });
    await drive(r, 1000);
    await assert.rejects(r.controller.pause('ro-test', 'x'), /already paused/);
    r.models.production = '2';
    await assert.rejects(rig({ models: r.models }).controller.start(specOf([{ setWeight: 5 }]), { by: 'x' }), /wine 2 is already production/);
    r.controller.stop();
  });
});

/** A repository that "crashes" (throws forever) after a number of commits, like kill -9. */
class CrashingRepository implements RolloutRepository {
  commits = 0;
  crashed = false;
  constructor(private readonly inner: RolloutRepository, private readonly crashAt: number, private readonly onCrash: () => void) {}
  #check(): void {
    if (this.crashed) throw new Error('process is dead');
  }
  async create(record: Parameters<RolloutRepository['create']>[0]) { this.#check(); return this.inner.create(record); }
  async load(id: string) { this.#check(); return this.inner.load(id); }
  async revisionOf(id: string) { this.#check(); return this.inner.revisionOf(id); }
  async list(filter?: { unfinished?: boolean }) { this.#check(); return this.inner.list(filter); }
  async count(filter?: { unfinished?: boolean }) { this.#check(); return this.inner.count(filter); }
  async commit(id: string, commit: RolloutCommit) {
    this.#check();
    this.commits += 1;
    if (this.commits === this.crashAt) {
      this.crashed = true;
      this.onCrash();
      throw new Error('process is dead');
    }
    return this.inner.commit(id, commit);
  }
  async isExecuted(id: string, actionId: string) { this.#check(); return this.inner.isExecuted(id, actionId); }
  async decisions(id: string, options?: { afterId?: string; limit?: number }) { this.#check(); return this.inner.decisions(id, options); }
}

describe('rollout controller: a misbehaving metrics backend', () => {
  /** Manual time for the controller, real time for the HTTP round trips in between. */
  async function driveReal(r: Rig, done: (state: RolloutState) => boolean): Promise<RolloutState> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const state = await r.controller.status('ro-test');
      if (done(state)) return state;
      if (Date.now() > deadline) throw new Error(`not done: ${state.phase}`);
      await r.scheduler.advance(1000);
      await r.controller.idle();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  const errorRatio = { name: 'error-ratio', interval: '1m', count: 3, provider: { prometheus: { query: 'errors{model="{{args.model}}"}' } }, successCondition: 'result[0] <= 0.01' };
  const logged: { level: number; msg: string; err?: unknown }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) });

  for (const [name, backend] of [
    ['unreachable (connection refused)', async () => ({ url: `http://127.0.0.1:${await freePort()}`, close: async () => {}, reason: /prometheus: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/ })],
    ['answering an empty sample value', async () => ({ ...(await misbehavingServer((_req, res) => res.end(vectorAnswer('')))), reason: /prometheus: malformed sample value "": not a number/ })],
  ] as const) {
    it(`rolls back, never promotes, when Prometheus is ${name} for the whole analysis (its Errors retried until past consecutiveErrorLimit)`, async () => {
      logged.length = 0;
      const server = await backend();
      try {
        const r = rig({ prometheus: new PrometheusProvider({ url: server.url, timeoutMs: 2000 }), logger });
        await r.controller.start(specOf([{ setWeight: 5 }, { analysis: { metrics: [errorRatio] } }, { setWeight: 100 }]), { by: 'alice' });
        const state = await driveReal(r, (s) => s.phase === 'Failed' || s.phase === 'Completed');
        r.controller.stop();
        assert.equal(state.phase, 'Failed');
        assert.equal(r.models.production, '1');
        for (const device of r.fleet.devices.values()) assert.notEqual(device.active, '2');
        const decisions = await r.controller.decisions('ro-test');
        const measurements = decisions.filter((d) => d.kind === 'measurement');
        // Errors do not count towards count 3 (Argo): the fifth consecutive one (> consecutiveErrorLimit 4) ends it.
        assert.deepEqual(measurements.map((d) => d.verdict), ['Error', 'Error', 'Error', 'Error', 'Error']);
        for (const m of measurements) assert.match(m.message, server.reason);
        const analysis = decisions.filter((d) => d.kind === 'analysis').at(-1)!;
        assert.equal(analysis.verdict, 'Error');
        assert.match(analysis.message, /error-ratio: 5 consecutive errors > consecutiveErrorLimit 4/);
        assert.match(analysis.message, server.reason);
        // A backend problem is a warning with its reason, never an error-level stack trace.
        assert.deepEqual(logged.filter((line) => line.level >= 50), []);
        assert.ok(logged.filter((line) => line.level === 40).some((line) => server.reason.test(line.msg)), 'a warning names the reason');
      } finally {
        await server.close();
      }
    });
  }
});

describe('rollout controller: crash and restart', () => {
  const spec = () => specOf([{ setWeight: 5 }, { analysis: { metrics: [goodMetric] } }, { setWeight: 50 }, { pause: { duration: '1m' } }, { setWeight: 100 }]);

  async function referenceRun(): Promise<{ commits: number; effects: Map<string, string[]>; steps: number[] }> {
    const repository = new CrashingRepository(new InMemoryRolloutRepository(), Number.POSITIVE_INFINITY, () => {});
    const r = rig({ repository });
    await r.controller.start(spec(), { by: 'alice' });
    await driveUntil(r, (s) => s.phase === 'Completed');
    await drive(r, 2000);
    r.controller.stop();
    const decisions = await repository.decisions('ro-test');
    return { commits: repository.commits, effects: new Map([...r.fleet.devices.values()].map((d) => [d.id, d.effects])), steps: startedSteps(decisions) };
  }

  const startedSteps = (decisions: readonly DecisionLogEntry[]) => decisions.filter((d) => d.kind === 'step' && d.verdict === 'started').map((d) => d.stepIndex);

  it('after a kill at any commit, a restart finishes the rollout and does no step twice', async () => {
    const reference = await referenceRun();
    assert.deepEqual(reference.steps, [0, 1, 2, 3, 4]);
    assert.ok(reference.commits >= 10, `the reference run commits ${reference.commits} times`);
    for (let crashAt = 1; crashAt <= reference.commits; crashAt += 1) {
      const scheduler = new ManualScheduler(T0);
      const fleet = new InMemoryFleet(fleetOf(20));
      const models = new InMemoryModelStatus('1');
      const store = new InMemoryRolloutRepository();
      const crashing = new CrashingRepository(store, crashAt, () => {
        fleet.alive = false;
        models.alive = false;
      });
      const first = rig({ repository: crashing, scheduler, fleet, models });
      await first.controller.start(spec(), { by: 'alice' }).catch(() => {});
      for (let i = 0; i < 200 && !crashing.crashed; i += 1) await drive(first, 5000);
      assert.ok(crashing.crashed, `crash ${crashAt} happened`);
      first.controller.stop();
      await first.controller.idle();

      // Restart: same store, same devices, a new process.
      fleet.alive = true;
      models.alive = true;
      const second = rig({ repository: store, scheduler, fleet, models });
      if (!(await store.load('ro-test'))) {
        // Killed before the rollout was created: starting again is the user's retry.
        await second.controller.start(spec(), { by: 'alice' });
      } else {
        await second.controller.recover();
      }
      const state = await driveUntil(second, (s) => s.phase === 'Completed');
      await drive(second, 2000);
      second.controller.stop();
      assert.equal(state.outcome?.status, 'production', `crash at commit ${crashAt}`);
      assert.deepEqual(startedSteps(await store.decisions('ro-test')), reference.steps, `crash at commit ${crashAt}: steps started once each`);
      for (const device of fleet.devices.values()) {
        assert.deepEqual(device.effects, reference.effects.get(device.id), `crash at commit ${crashAt}: ${device.id} got each assignment once`);
      }
      const measurementKeys = (await store.decisions('ro-test')).filter((d) => d.kind === 'measurement').map((d) => `${d.measurement!.metric}#${d.measurement!.index}`);
      assert.equal(new Set(measurementKeys).size, measurementKeys.length, `crash at commit ${crashAt}: no measurement recorded twice`);
      const pending = (await store.load('ro-test'))!.pendingActions as readonly RolloutAction[];
      assert.deepEqual(pending, []);
      assert.equal(models.production, '2');
    }
  });
});
