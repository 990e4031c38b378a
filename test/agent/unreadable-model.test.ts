import assert from 'node:assert/strict';
import { chmod, chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test } from 'node:test';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';
import { AgentProcess, predictVia } from './agent-process.ts';

/**
 * A model file the agent cannot read (EACCES here; EIO from a worn SD card takes the same path),
 * on a real agent process. Root reads any file, so a root test runs the agent as nobody, as the
 * systemd unit (DynamicUser) does; another user is bound by the file's mode 000 itself.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const NOBODY = { uid: 65534, gid: 65534 };
const asRoot = process.getuid?.() === 0;
const ROW = [[1, 2, 3, 4, 5, 6, 7]];

async function chownTree(path: string, owner: { uid: number; gid: number }): Promise<void> {
  await chown(path, owner.uid, owner.gid);
  for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(child, owner);
    else await chown(child, owner.uid, owner.gid);
  }
}

function logLines(stderr: string): Record<string, any>[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);
}

const reasonOf = (report: Report) => (report.kind === 'assignment' ? (report.reason ?? '') : '');

test('an unreadable model.onnx fails verification like a damaged one: the agent starts on the previous model (no exit 2), downloads the active one again, and answers a rollback to an unreadable one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-unreadable-'));
  deferCleanup(t, () => rm(dir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  const config = await world.config('unreadable-1');
  const dataDir = join(dir, 'data');
  const seeding = await startAgent(t, world, 'unreadable-1', { config, dataDir });
  const first = await world.assign('unreadable-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const promoted = await world.assign('unreadable-1', world.v2, 'active');
  const activation = await world.waitForReport(isOutcome(promoted.id, 'activated'));
  await seeding.stop();

  const onnx = (artifact: TestArtifact) => join(dataDir, 'models', artifact.id, 'model.onnx');
  await chmod(onnx(world.v2), 0o000);
  const configPath = await AgentProcess.writeConfig(dir, config);
  if (asRoot) await chownTree(dir, NOBODY);
  const downloads = world.http.blobRequests().length;
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', dataDir], {}, undefined, asRoot ? NOBODY : undefined);
  t.after(() => agent.stop());
  const { port, active } = await agent.ready();
  assert.equal(active, '1', 'started on the previous model');
  const dropped = logLines(agent.stderr).find((line) => line.msg === 'a model on disk failed verification; dropping it from its slot');
  assert.match(dropped?.reason ?? '', /^EACCES: permission denied, open '.*\/model\.onnx'$/, 'one line naming the file and the error');
  assert.ok(dropped?.reason.includes(onnx(world.v2)));

  // The server hears of it (a refusal of the assignment that installed v2), and its retained
  // assignment, v2 active, is taken again: v2 is downloaded, verified and served again.
  const loss = await world.waitForReport(isOutcome(promoted.id, 'refused'));
  assert.match(reasonOf(loss), /^dropped from the active slot, its files on the device unusable: EACCES: permission denied/);
  await world.waitForReport((report) => isOutcome(promoted.id, 'activated')(report) && report.id !== activation.id);
  await waitFor(async () => (await predictVia(port, ROW)).json.sha256 === world.v2.id, 10_000, 'v2 served again');
  assert.ok(world.http.blobRequests().length > downloads, 'v2 downloaded again');

  // A rollback to a previous model that cannot be read is answered (refused), not left hanging.
  await chmod(onnx(world.v1), 0o000);
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['unreadable-1'] }, { privateKey: world.privateKey });
  const refused = await world.waitForReport(isOutcome(rollback.id, 'refused'), 15_000);
  assert.match(reasonOf(refused), /^previous model unusable: EACCES: permission denied, open '.*\/model\.onnx'$/);
  assert.equal((await predictVia(port, ROW)).json.sha256, world.v2.id, 'still serving v2');
  assert.equal(logLines(agent.stderr).filter((line) => line.msg === 'agent task failed').length, 0);
});
