import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createAgentWorld, type AgentWorld } from './agent-fixtures.ts';
import { AgentProcess } from './agent-process.ts';
import { HOLD_AFTER_READY_LINE_ENV } from '../helpers/hold-after-ready-line.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

test('an agent sent SIGTERM as soon as it prints its ready line stops cleanly', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-ready-signal-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const configPath = await AgentProcess.writeConfig(dir, await world.config('ready-signal'));
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'data')], HOLD_AFTER_READY_LINE_ENV);
  t.after(() => agent.kill9());
  await agent.waitFor(() => agent.stdout.includes('agent ready'), 30_000, 'the agent ready line');
  await agent.stop();
  assert.deepEqual(await agent.exited, { code: 0, signal: null }, agent.stderr);
  assert.match(agent.stderr, /"msg":"shutting down"/);
});
