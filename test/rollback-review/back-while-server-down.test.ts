import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { engineMissing } from '../helpers/engines.ts';
import { mosquittoBinary, MosquittoProcess } from '../helpers/mosquitto.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * Mosquitto keeps the sessions: a device offline during a rollback that comes back while the
 * server is down (an upgrade, a crash) takes the drop-candidate waiting in its session and answers
 * it; Mosquitto keeps the answer, and the device's retained "online", for the server. The restarted
 * server reads both as soon as it connects — before its rollout controller runs — and they went
 * nowhere: the rollout counted that device unreachable for good, although it was back on its
 * baseline, and nothing would ever send it anything again.
 */
test('Mosquitto: a device that took its revert while the server was down is counted back once the server is up again', { timeout: 60_000 }, async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'Mosquitto', 'no mosquitto executable on PATH');
  const pidDir = await mkdtemp(join(tmpdir(), 'fleetprune-rollback-mosquitto-'));
  t.after(() => rm(pidDir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, pidDir);
  t.after(() => mosquitto.stop());
  const world = (await startRollbackWorld(t, ['down-1', 'down-2'], {
    config: { mqttUrl: mosquitto.url, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile, mqttPassword: password },
  }))!;
  const { agents } = world;
  const id = await startRollout(world, [{ setWeight: 100 }, { pause: {} }]);
  await waitFor(async () => (await world.rollout(id)).phase === 'Paused', 20_000, 'the candidate installed everywhere');
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.candidate?.version === '2'), 10_000, 'both devices carry wine@2');

  await agents.get('down-2')!.stop();
  await waitFor(async () => !(await world.device('down-2')).online, 10_000, 'down-2 offline');
  await json(await world.server.request('POST', `/api/rollouts/${id}/rollback?reason=review`));
  await waitFor(async () => (await world.rollout(id)).deviceStates.find((device: any) => device.id === 'down-2')?.delivery === 'unreachable', 20_000, 'down-2 unreachable');

  // The server goes down; down-2 comes back meanwhile and takes the drop-candidate from its session.
  await world.restart({}, async () => {
    const back = await world.startAgent('down-2');
    await waitFor(() => back.slots.candidate === null, 20_000, 'down-2 dropped the candidate while the server was down');
  });
  assert.equal(agents.get('down-2')!.slots.active?.version, '1');
  await waitFor(async () => (await world.rollout(id)).devices.delivered === 2, 15_000, 'the rollout counts down-2 back').catch(async (error) => {
    throw new Error(`${error.message}: ${JSON.stringify((await world.rollout(id)).deviceStates)}`);
  });
});
