import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { AgentProcess, predictVia } from './agent-process.ts';
import { startAgent } from './agent-harness.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { commandSucceeds, mountTmpfs, remount } from '../helpers/tmpfs.ts';

/**
 * A device whose data disk filled up, or was remounted read-only (a worn SD card), still has its
 * models intact: after a restart the agent must serve them, not refuse to start for want of room
 * for its lock file; and it still refuses a second agent on the same data dir.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const ROW = [[1, 2, 3, 4, 5, 6, 7]];

/** A 2 MiB tmpfs holding a data dir with v1 active; null when this machine cannot mount one (not root). */
async function smallDisk(t: TestContext, deviceId: string): Promise<{ mount: string; dataDir: string; configPath: string } | null> {
  const mount = await mountTmpfs(t, `small-disk-${deviceId}`, '2m');
  if (!mount) return null;
  const dataDir = join(mount, 'data');
  const config = await world.config(deviceId);
  const seeding = await startAgent(t, world, deviceId, { dataDir, config });
  const assignment = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  await seeding.agent.idle();
  await seeding.stop();
  const configDir = await mkdtemp(join(tmpdir(), 'fleetprune-small-disk-config-'));
  deferCleanup(t, () => rm(configDir, { recursive: true, force: true }));
  return { mount, dataDir, configPath: await AgentProcess.writeConfig(configDir, config) };
}

for (const kind of ['full', 'read-only'] as const) {
  test(`an agent restarted on a ${kind} data disk serves its active model, and refuses a second agent on that data dir`, async (t) => {
    const disk = await smallDisk(t, `disk-${kind}`);
    if (!disk) return t.skip('cannot mount a tmpfs here (needs root)');
    if (kind === 'full') await writeFile(join(disk.mount, 'filler'), Buffer.alloc(4 * 1024 * 1024)).catch(() => {});
    else assert.ok(await remount(disk.mount, 'ro'), 'remounted read-only');

    const first = AgentProcess.spawn(['--config', disk.configPath, '--data-dir', disk.dataDir]);
    deferCleanup(t, () => first.stop());
    const { port, active } = await first.ready();
    assert.equal(active, '1');
    assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id);
    await first.waitForLog("the data dir's disk takes no writes: running without its lock file (the agent still refuses a second agent on this device); models, assignments and reports wait for room");
    assert.deepEqual((await readdir(disk.dataDir)).filter((name) => name.startsWith('agent.lock')), [], 'no lock file, nor a temporary one');

    const second = AgentProcess.spawn(['--config', disk.configPath, '--data-dir', disk.dataDir]);
    const exit = await Promise.race([second.exited, delay(20_000, 'still running' as const, { ref: false })]);
    assert.deepEqual(exit, { code: 2, signal: null }, second.stderr);
    assert.equal(second.stderr, `fleetprune: --data-dir ${disk.dataDir} is in use by another fleetprune agent; stop it or choose another --data-dir\n`);
    assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id, 'the first one runs on');
    await first.stop();
    assert.deepEqual(await first.exited, { code: 0, signal: null }, first.stderr);
  });
}

test('two agents whose own volumes are mounted at the same path in separate mount namespaces (containers on the host network) both run', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'fleetprune-namespaces-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  if (!(await commandSucceeds('unshare', ['-m', '--propagation', 'private', 'true']))) return t.skip('cannot make a mount namespace here (needs root and unshare)');
  const mountPoint = join(base, 'volume');
  await mkdir(mountPoint);
  const agents: AgentProcess[] = [];
  for (const deviceId of ['ns-a', 'ns-b']) {
    const configPath = await AgentProcess.writeConfig(await mkdtemp(join(base, 'config-')), await world.config(deviceId));
    // Each in its own mount namespace, with its own tmpfs at the same path: another device's data dir.
    const agent = AgentProcess.spawnIn(['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs tmpfs ${mountPoint} && exec "$0" "$@"`], ['--config', configPath, '--data-dir', join(mountPoint, 'data')]);
    t.after(() => agent.stop());
    agents.push(agent);
    await agent.ready();
  }
  for (const agent of agents) assert.equal(agent.stderr.includes('is in use by another fleetprune agent'), false, agent.stderr);
});
