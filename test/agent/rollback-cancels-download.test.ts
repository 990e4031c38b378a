import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import type { AgentDependencies, AgentOptions } from '../../agent/agent.ts';
import type { SlotState } from '../../agent/slot-state.ts';
import { publishAssignment, publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import { signFleetCommand } from '../../shared/protocol/message-signature.ts';
import type { Role } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { TOKEN, createAgentWorld, isAnswerTo, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { HostileHttpServer } from './hostile-http.ts';

/** docs/agent.md: a rollback never waits for a download of an assignment issued before it; that assignment is refused, cancelled by it. */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/** An agent whose artifact server can stall a blob; downloads are given minutes before they time out. */
async function stallingAgent(t: TestContext, deviceId: string, options: Partial<AgentOptions> & { logger?: AgentDependencies['logger'] } = {}) {
  const hostile = await HostileHttpServer.start(world.http.url);
  t.after(() => hostile.close());
  const config = await world.harness.enroll(deviceId, { url: hostile.url, token: TOKEN, publicKey: world.publicKey });
  const running = await startAgent(t, world, deviceId, { config, downloadLimits: { idleTimeoutMs: 600_000, rateWindowMs: 600_000 }, ...options });
  const assign = (artifact: TestArtifact, role: Role) =>
    publishAssignment(world.harness.broker, deviceId, { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: hostile.url }, { privateKey: world.privateKey });
  const held: ServerResponse[] = [];
  let released = false;
  /** `artifact`'s blob sends its headers, then nothing (until `release`). */
  const stall = (artifact: TestArtifact) => {
    const blob = `/api/blobs/${artifact.manifest.files['model.onnx']!.sha256}`;
    hostile.handler = (_request, response, seen) => {
      if (released || seen.path !== blob) return false;
      response.writeHead(200, { 'content-length': String(artifact.manifest.files['model.onnx']!.bytes) });
      response.flushHeaders();
      held.push(response);
      return true;
    };
    return () => hostile.requestsTo(blob).length > 0;
  };
  /** Cuts the stalled responses: the download is retried (with Range) and served in full. */
  const release = () => {
    released = true;
    for (const response of held) response.destroy();
  };
  return { assign, stall, release, ...running };
}

for (const role of ['candidate', 'active'] as const) {
  test(`a rollback stops the stalled download of ${role === 'active' ? 'an activation' : 'a candidate'} issued before it: carried out at once, that assignment refused as cancelled by it`, async (t) => {
    const deviceId = `rollback-cancels-${role}`;
    const { agent, assign, stall } = await stallingAgent(t, deviceId);
    await waitFor(() => agent.connected, 5000, 'connected');
    for (const model of [world.v1, world.v3]) {
      const assigned = await assign(model, 'active');
      await world.waitForReport(isOutcome(assigned.id, 'activated'));
    }
    const started = stall(world.v2);
    const assignment = await assign(world.v2, role);
    await waitFor(started, 10_000, 'the download under way');
    const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
    // The download would hold the work queue for ten minutes.
    await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 20_000);
    const answer = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
    await agent.idle();
    assert.equal(answer.kind === 'assignment' && `${answer.outcome}: ${answer.reason}`, `refused: cancelled by rollback ${rollback.id}`);
    assert.deepEqual([agent.slots.active?.version, agent.slots.candidate, agent.slots.previous?.version], ['1', null, '3'], 'rolled back to v1, nothing installed');
  });
}

test('a rollback that has nothing to roll back to (no previous model) does not cancel the download of an activation issued before it: activated, then rolled back by it', async (t) => {
  const deviceId = 'noop-rollback-keeps-download';
  const { logger, lines } = recordingLogger();
  const { agent, assign, stall, release } = await stallingAgent(t, deviceId, { logger });
  await waitFor(() => agent.connected, 5000, 'connected');
  const first = await assign(world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  assert.equal(agent.slots.previous?.version, undefined, 'no previous model');
  const started = stall(world.v2);
  const activation = await assign(world.v2, 'active');
  await waitFor(started, 10_000, 'the download under way');
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  // Received (and the download cancelled or not, in the same turn); then the download may finish.
  await waitFor(() => lines.some((line) => line.msg === 'fleet command received' && line.commandId === rollback.id), 10_000, 'the rollback received');
  release();
  const answer = await world.waitForReport(isAnswerTo(activation.id), 20_000);
  const rolled = await world.waitForReport(isAnswerTo(rollback.id), 20_000);
  await agent.idle();
  assert.equal(answer.kind === 'assignment' && `${answer.outcome}: ${answer.reason}`, 'activated: null', 'the activation is not lost to a rollback that could change nothing');
  // Issued after the activation, the rollback wins over it once it has something to roll back to.
  assert.equal(rolled.kind === 'assignment' && rolled.outcome, 'rolled-back', `the rollback is carried out after it: ${JSON.stringify(rolled)}`);
  assert.deepEqual([agent.slots.active?.version, agent.slots.previous?.version], ['1', '2'], 'v1 active again, v2 previous');
});

/**
 * A rollback saved on receipt and cut short by kill -9 (state.json: pendingCommands) next to a
 * pending activation whose download was under way: the next start carries out the rollback first,
 * never behind that download; the activation is then judged by the issue times, as on receipt.
 */
for (const { rollbackIssued, stalledAfterRestart } of [
  { rollbackIssued: 'after', stalledAfterRestart: true },
  { rollbackIssued: 'after', stalledAfterRestart: false },
  { rollbackIssued: 'before', stalledAfterRestart: false },
] as const) {
  test(`restart with a pending activation (download${stalledAfterRestart ? ' stalled' : ''}) and a saved rollback issued ${rollbackIssued} it: ${rollbackIssued === 'after' ? 'the rollback is carried out first and the activation refused as moot' : 'the rollback is carried out first, then the activation'}`, async (t) => {
    const deviceId = `restart-rollback-${rollbackIssued}-${stalledAfterRestart ? 'stalled' : 'flowing'}`;
    const hostile = await HostileHttpServer.start(world.http.url);
    t.after(() => hostile.close());
    const config = await world.harness.enroll(deviceId, { url: hostile.url, token: TOKEN, publicKey: world.publicKey });
    const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-restart-rollback-'));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const assign = (artifact: TestArtifact, role: Role) =>
      publishAssignment(world.harness.broker, deviceId, { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: hostile.url }, { privateKey: world.privateKey });
    let stalled = true;
    const blob = `/api/blobs/${world.v2.manifest.files['model.onnx']!.sha256}`;
    hostile.handler = (_request, response, seen) => {
      if (!stalled || seen.path !== blob) return false;
      response.writeHead(200, { 'content-length': String(world.v2.manifest.files['model.onnx']!.bytes) });
      response.flushHeaders();
      return true;
    };
    const downloadLimits = { idleTimeoutMs: 600_000, rateWindowMs: 600_000 };
    const first = await startAgent(t, world, deviceId, { config, dataDir, downloadLimits });
    await waitFor(() => first.agent.connected, 5000, 'connected');
    for (const model of [world.v1, world.v3]) {
      const assigned = await assign(model, 'active');
      await world.waitForReport(isOutcome(assigned.id, 'activated'));
    }
    const issuedBefore = new Date(Date.now() - 1).toISOString();
    const activation = await assign(world.v2, 'active');
    await waitFor(() => hostile.requestsTo(blob).length > 0, 10_000, 'the download under way');
    await first.stop(); // the activation stays pending
    // What the save on receipt leaves on disk when kill -9 comes right after it.
    const issuedAt = rollbackIssued === 'after' ? new Date(Math.max(Date.now(), Date.parse(activation.issuedAt) + 1)).toISOString() : issuedBefore;
    const rollback = signFleetCommand({ schema: 1, id: `rollback-${deviceId}`, issuedAt, command: 'rollback', selector: { deviceIds: [deviceId] }, seq: Date.now() * 1000 }, world.privateKey);
    const path = join(dataDir, 'state.json');
    const state = JSON.parse(await readFile(path, 'utf8')) as SlotState;
    assert.equal(state.pending?.id, activation.id, 'the activation is pending');
    await writeFile(path, JSON.stringify({ ...state, pendingCommands: [rollback], commandSeq: rollback.seq }));
    stalled = stalledAfterRestart;
    const second = await startAgent(t, world, deviceId, { config, dataDir, downloadLimits });
    // A stalled download would hold the work queue for ten minutes.
    const rolled = await world.waitForReport(isAnswerTo(rollback.id), 20_000);
    assert.equal(rolled.kind === 'assignment' && `${rolled.outcome}: ${rolled.reason}`, 'rolled-back: null', 'the rollback is carried out at once');
    const answer = await world.waitForReport(isAnswerTo(activation.id), 20_000);
    await second.agent.idle();
    const reports = world.harness.ingest.reports;
    assert.ok(reports.findIndex(isAnswerTo(rollback.id)) < reports.findIndex(isAnswerTo(activation.id)), 'the rollback is answered before the activation');
    if (rollbackIssued === 'after') {
      assert.equal(answer.kind === 'assignment' && `${answer.outcome}: ${answer.reason}`, 'refused: not activated: a rollback issued after it was carried out (now active 1, candidate none)', 'the rollback wins over the activation issued before it');
      assert.deepEqual([second.agent.slots.active?.version, second.agent.slots.previous?.version], ['1', '3'], 'rolled back from v3 to v1, v2 not activated');
    } else {
      assert.equal(answer.kind === 'assignment' && `${answer.outcome}: ${answer.reason}`, 'activated: null', 'an activation issued after the rollback is carried out after it');
      assert.deepEqual([second.agent.slots.active?.version, second.agent.slots.previous?.version], ['2', '1'], 'rolled back to v1, then v2 activated');
    }
  });
}

test('housekeeping timers that fire while a stalled download holds the work queue queue one task each, not one per tick (fleetprune_agent_work_queued)', async (t) => {
  const deviceId = 'housekeeping-behind-download';
  // Sweeps of stale downloads every 20 ms: about fifty ticks over the second the download stalls.
  const { agent, assign, stall, release } = await stallingAgent(t, deviceId, { staleDownloadSweepMs: 20 });
  const queued = async () => (await agent.metrics.workQueued.get()).values[0]!.value;
  await waitFor(() => agent.connected, 5000, 'connected');
  const first = await assign(world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const started = stall(world.v2);
  const candidate = await assign(world.v2, 'candidate');
  await waitFor(started, 10_000, 'the download under way');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(await queued(), 2, 'the stalled download and one sweep queued behind it');
  release();
  await world.waitForReport(isOutcome(candidate.id, 'installed'), 20_000);
  await agent.idle();
  await waitFor(async () => (await queued()) === 0, 5000, 'the queue empty once the sweeps behind the download ran');
  assert.equal(agent.slots.candidate?.version, '2', 'the candidate installed');
});
