import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import type { AgentOptions } from '../../agent/agent.ts';
import { publishAssignment, publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { Role } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { TOKEN, createAgentWorld, isAnswerTo, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';
import { HostileHttpServer } from './hostile-http.ts';

/** docs/agent.md: a rollback never waits for a download of an assignment issued before it; that assignment is refused, cancelled by it. */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/** An agent whose artifact server can stall a blob; downloads are given minutes before they time out. */
async function stallingAgent(t: TestContext, deviceId: string, options: Partial<AgentOptions> = {}) {
  const hostile = await HostileHttpServer.start(world.http.url);
  t.after(() => hostile.close());
  const config = await world.harness.enroll(deviceId, { url: hostile.url, token: TOKEN, publicKey: world.publicKey });
  const running = await startAgent(t, world, deviceId, { config, downloadLimits: { idleTimeoutMs: 600_000, rateWindowMs: 600_000 }, ...options });
  const assign = (artifact: TestArtifact, role: Role) =>
    publishAssignment(world.harness.broker, deviceId, { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: hostile.url }, { privateKey: world.privateKey });
  /** `artifact`'s blob sends its headers, then nothing. */
  const stall = (artifact: TestArtifact) => {
    const blob = `/api/blobs/${artifact.manifest.files['model.onnx']!.sha256}`;
    hostile.handler = (_request, response, seen) => {
      if (seen.path !== blob) return false;
      response.writeHead(200, { 'content-length': String(artifact.manifest.files['model.onnx']!.bytes) });
      response.flushHeaders();
      return true;
    };
    return () => hostile.requestsTo(blob).length > 0;
  };
  return { assign, stall, ...running };
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
