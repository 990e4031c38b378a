import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const warning = /^the broker closed this device's connection \d+ times in a row within 10 s of connecting: another client may be connected as clone-1 \(the same config on two devices, or a second agent\)/;

test('two agents given one config (a cloned SD card) take the broker connection from each other: each says another client may hold its id, where they fought silently', async (t) => {
  const config = await world.config('clone-1');
  const logs = [recordingLogger(), recordingLogger()];
  for (const [i, { logger }] of logs.entries()) {
    const dataDir = await mkdtemp(join(tmpdir(), `fleetprune-agent-clone-${i}-`));
    deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
    await startAgent(t, world, 'clone-1', { config, dataDir, holdout: undefined, logger });
  }
  const warned = () => logs.filter(({ lines }) => lines.some((line) => line.level >= 40 && warning.test(line.msg))).length;
  await waitFor(() => warned() === 2, 20_000, 'both agents warned');
});

