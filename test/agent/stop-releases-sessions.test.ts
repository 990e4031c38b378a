import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { OrtSessionCache, type SessionCache, type SessionLease } from '../../agent/session-cache.ts';
import type { OnnxSource } from '../../agent/verified-onnx.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

/** docs/agent.md: stop() gives the work in progress a grace period; a session that work loads later is let go once it ends. */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/** The real cache, whose loads wait while `hold` is set (a slow disk, a large model). */
class HeldSessionCache implements SessionCache {
  readonly inner = new OrtSessionCache();
  hold: Promise<void> | undefined;
  heldLoads = 0;

  async acquire(source: OnnxSource): Promise<SessionLease> {
    if (this.hold) {
      this.heldLoads++;
      await this.hold;
    }
    return this.inner.acquire(source);
  }
}

test('a model whose session is still loading when stop() gives up waiting is let go once the load ends: no onnxruntime session outlives the stopped agent', async (t) => {
  const deviceId = 'stop-while-loading';
  const sessions = new HeldSessionCache();
  const running = await startAgent(t, world, deviceId, { sessions, stopGraceMs: 100 });
  await waitFor(() => running.agent.connected, 5000, 'connected');
  const first = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  assert.equal(sessions.inner.size, 1, 'v1 served');

  let release!: () => void;
  sessions.hold = new Promise((resolve) => (release = resolve));
  await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => sessions.heldLoads > 0, 10_000, 'v2\'s session loading');
  await running.stop();
  assert.equal(sessions.inner.size, 0, 'v1\'s session let go at stop');

  sessions.hold = undefined;
  release();
  await running.agent.idle();
  await waitFor(() => sessions.inner.size === 0, 5000, 'the session loaded after stop() let go');
  assert.equal(sessions.inner.size, 0);
});
