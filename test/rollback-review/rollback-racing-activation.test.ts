import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { MqttClient } from 'mqtt';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A rollback decided while the promotion's activation is on its way to a device: the server's
 * device table still shows the baseline active, so the revert only sends `drop-candidate` (and
 * retains the baseline as active). The device, having activated the candidate meanwhile, answers
 * the drop `refused: no candidate to drop` — which the rollout took as "back on its baseline". When
 * the retained baseline then failed on the device (its copy gone, and the server without its file), the
 * rollout still reported every device back (nothing to roll back again) while the device ran the
 * rolled-back candidate.
 */

/** Holds every message `deviceId`'s MQTT client receives from the first that `gate` matches until `release()`. */
function holdMessages(deviceId: string, gate: (topic: string, payload: Buffer) => boolean) {
  const prototype = MqttClient.prototype as unknown as { on: (this: MqttClient, event: string, listener: (...args: unknown[]) => void) => MqttClient };
  const hadOwn = Object.prototype.hasOwnProperty.call(prototype, 'on');
  const original = prototype.on;
  const held: (() => void)[] = [];
  let holding = false;
  let released = false;
  let seen = () => {};
  const gateSeen = new Promise<void>((resolve) => (seen = resolve));
  prototype.on = function (this: MqttClient, event: string, listener: (...args: unknown[]) => void) {
    if (event !== 'message' || this.options.clientId !== deviceId) return original.call(this, event, listener);
    return original.call(this, 'message', (...args: unknown[]) => {
      if (!released && (holding || gate(args[0] as string, args[1] as Buffer))) {
        holding = true;
        seen();
        held.push(() => listener(...args));
        return;
      }
      listener(...args);
    });
  };
  return {
    gateSeen,
    release() {
      released = true;
      for (const deliver of held.splice(0)) deliver();
    },
    restore() {
      if (hadOwn) prototype.on = original;
      else delete (prototype as { on?: unknown }).on;
    },
  };
}

test('a rollback racing the activation of the candidate does not count a device as back while it runs the candidate', { timeout: 90_000 }, async (t) => {
  const gate = holdMessages('race-1', (_topic, payload) => {
    try {
      const message = JSON.parse(payload.toString('utf8')) as { role?: string; version?: string };
      return message.role === 'active' && message.version === '2';
    } catch {
      return false;
    }
  });
  t.after(() => gate.restore());
  const world = (await startRollbackWorld(t, ['race-1']))!;
  const { server, agents, proxy } = world;
  const id = await startRollout(world, [{ setWeight: 100 }, { pause: {} }]);
  await waitFor(async () => (await world.rollout(id)).phase === 'Paused', 20_000, 'the candidate on the device, the rollout paused');
  const agent = agents.get('race-1')!;
  assert.equal(agent.slots.candidate?.version, '2');

  // Promote: the activation of wine@2 reaches the device, which has not acted on it yet.
  await json(await server.request('POST', `/api/rollouts/${id}/promote`));
  await gate.gateSeen;
  // The device's copy of wine@1 is gone and cannot be downloaded for now.
  await rm(join(world.dataDir, 'race-1', 'models', agent.slots.active!.sha256), { recursive: true, force: true });
  proxy.missing.add(world.versions.get('1')!.files['model.onnx']!.sha256);

  // Rolled back while the activation is on its way; then the device acts on what it got, in order.
  await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=race`));
  gate.release();
  await waitFor(async () => (await world.answers('race-1')).some((answer) => / active v1 refused/.test(answer)), 30_000, 'the device refused its baseline');
  const rollout = await settled(world, id, 'RolledBack');
  assert.equal(agent.slots.active?.version, '2', `the device runs the candidate: ${(await world.answers('race-1')).join('; ')}`);
  assert.equal(rollout.devices.delivered, 0, `the device is not reported back on its baseline: ${JSON.stringify(rollout.deviceStates)}`);
  assert.equal(rollout.notBackOnBaseline, 1);

  // A second rollback, once the download works, brings it back.
  proxy.missing.clear();
  await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=again`));
  await waitFor(() => agent.slots.active?.version === '1', 30_000, 'the device back on wine@1');
  const again = await settled(world, id, 'RolledBack');
  assert.equal(again.devices.delivered, 1, JSON.stringify(again.deviceStates));
});
