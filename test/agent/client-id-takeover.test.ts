import assert from 'node:assert/strict';
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
  // And they back off, rather than take the connection from each other every reconnect period
  // (200 ms here; 1 s by default) for as long as both run: after the warning's three short
  // sessions the period has grown to 1.6 s and more, doubling up to 30 s.
  const connects = () => logs.reduce((sum, { lines }) => sum + lines.filter((line) => line.msg === 'connected to the broker').length, 0);
  const before = connects();
  await new Promise((resolve) => setTimeout(resolve, 4000));
  const during = connects() - before;
  t.diagnostic(`${during} connects of the two agents in 4 s after both warned`);
  assert.ok(during <= 6, `${during} connects in 4 s: the agents did not back off`);
});

