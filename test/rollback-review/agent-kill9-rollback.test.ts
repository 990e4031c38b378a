import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createAgentWorld, isOutcome, type AgentWorld } from '../agent/agent-fixtures.ts';
import { startAgent } from '../agent/agent-harness.ts';
import { AgentProcess, predictVia } from '../agent/agent-process.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';

/**
 * A revert's rollback from disk (the baseline, `previous`, assigned `active` again) in a real agent
 * process killed with -9 at each point of the switch: after the restart it serves a good model,
 * finishes the rollback from disk — no download — and answers it once.
 */
let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const ROW = [[1, 2, 3, 4, 5, 6, 7]];

for (const point of ['activation:before-state', 'activation:after-state'] as const) {
  test(`kill -9 during a rollback from disk (${point}): after restart the agent serves the baseline, answered once, nothing downloaded`, { timeout: 90_000 }, async (t) => {
    const deviceId = `rollback-${point.replace(/[:]/g, '-')}`;
    const dir = await mkdtemp(join(tmpdir(), `fleetprune-rollback-crash-`));
    const processes: AgentProcess[] = [];
    t.after(() => Promise.all(processes.map((p) => p.stop())));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const config = await world.config(deviceId);
    const configPath = await AgentProcess.writeConfig(dir, config);
    const dataDir = join(dir, 'data');
    const spawn = (env: Record<string, string> = {}) => {
      const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', dataDir], env);
      processes.push(agent);
      return agent;
    };
    // v1 active, then v3 active (v1 becomes previous), by an in-process agent (faster to start).
    const seeding = await startAgent(t, world, deviceId, { dataDir, config });
    for (const version of [world.v1, world.v3]) {
      const assignment = await world.assign(deviceId, version, 'active');
      await world.waitForReport(isOutcome(assignment.id, 'activated'));
    }
    await seeding.stop();
    const downloads = world.http.blobRequests().length;

    const crashing = spawn({ FLEETPRUNE_AGENT_CRASH_AT: point });
    await crashing.ready();
    const revert = await world.assign(deviceId, world.v1, 'active', { revert: true });
    assert.equal((await crashing.exited).signal, 'SIGKILL');

    const second = spawn();
    const { port, active } = await second.ready();
    assert.equal(active, point === 'activation:after-state' ? '1' : '3');
    assert.equal((await predictVia(port, ROW)).status, 200);
    await world.waitForReport(isOutcome(revert.id, 'rolled-back'), 20_000);
    // The answer is committed with the state, a moment before the model is swapped in.
    await waitFor(async () => (await predictVia(port, ROW)).json.sha256 === world.v1.id, 10_000, 'serving v1');
    assert.equal(world.harness.ingest.reports.filter(isOutcome(revert.id, 'rolled-back')).length, 1);
    assert.equal(world.http.blobRequests().length, downloads, 'rolled back from disk: nothing downloaded');
  });
}
