import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test, type TestContext } from 'node:test';
import type { AgentOptions } from '../../agent/agent.ts';
import { publishAssignment } from '../../server/fleet/fleet-publisher.ts';
import type { Report, Role } from '../../shared/protocol/payloads.ts';
import { TOKEN, createAgentWorld, isAnswerTo, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';
import { HostileHttpServer } from './hostile-http.ts';

const execFileAsync = promisify(execFile);

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const reasonOf = (report: Report) => (report.kind === 'assignment' ? (report.reason ?? '') : '');

/** A real agent enrolled with a misbehaving server that forwards to the artifact fixture unless told otherwise. */
async function hostileAgent(t: TestContext, deviceId: string, options: Partial<AgentOptions> & { dataDir?: string } = {}) {
  const hostile = await HostileHttpServer.start(world.http.url);
  const config = await world.harness.enroll(deviceId, { url: hostile.url, token: TOKEN, publicKey: world.publicKey });
  const running = await startAgent(t, world, deviceId, { config, ...options });
  t.after(() => hostile.close()); // after the agent's stop hook
  const assign = (artifact: TestArtifact, role: Role) =>
    publishAssignment(world.harness.broker, deviceId, { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: hostile.url }, { privateKey: world.privateKey });
  return { hostile, assign, ...running };
}

test('a fresh download answered with a 206 the agent did not ask for (no Content-Range) is retried from zero, not refused as a failure of the device\'s disk', async (t) => {
  const { hostile, assign, agent } = await hostileAgent(t, 'audit-unasked-206');
  const bytes = await readFile(join(world.v1.dir, 'model.onnx'));
  let odd = 1;
  hostile.handler = (request, response) => {
    if (!request.url!.startsWith('/api/blobs/') || odd === 0) return false;
    odd -= 1;
    // No Range was sent; the answer is a 206 that says no range at all.
    response.writeHead(206, { 'Content-Length': bytes.length }).end(bytes);
    return true;
  };
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.doesNotMatch(reasonOf(report), /ENOENT/, 'not blamed on the device\'s storage');
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.deepEqual(hostile.requestsTo('/api/blobs/').map((r) => r.range), [undefined, undefined]);
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('a directory named like a partial download in downloads/ does not make every download fail: it is removed like any other leftover', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-audit-partdir-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const junk = join(dataDir, 'downloads', `${'a'.repeat(64)}.part`);
  await mkdir(join(junk, 'inside'), { recursive: true });
  const { assign, agent } = await hostileAgent(t, 'audit-partdir', { dataDir });
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), []);
});

test('a directory or a FIFO where the partial download of the very model assigned goes is removed, neither refused as a disk failure nor waited on for good', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-audit-ownpart-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const partOf = (artifact: TestArtifact) => join(dataDir, 'downloads', `${artifact.manifest.files['model.onnx']!.sha256}.part`);
  const { assign, agent } = await hostileAgent(t, 'audit-ownpart', { dataDir });
  // Each made just before its own model is assigned: a download removes the other models' leftovers.
  const junk = {
    [world.v1.id]: () => mkdir(join(partOf(world.v1), 'inside'), { recursive: true }),
    [world.v2.id]: () => execFileAsync('mkfifo', [partOf(world.v2)]),
  };
  for (const artifact of [world.v1, world.v2]) {
    await junk[artifact.id]!();
    const assignment = await assign(artifact, 'active');
    const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
    assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
    assert.equal(agent.slots.active?.sha256, artifact.id);
  }
});
