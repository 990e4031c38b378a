import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { publishAssignment, publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { Report, Role, Signer } from '../../shared/protocol/payloads.ts';
import { endorseSigner } from '../../shared/protocol/signer-endorsement.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, writeVersionedArtifact, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';
import { makeFifo } from './fifo.ts';

/**
 * Artifacts signed by a key other than the server's (a CI key the server trusts with
 * --trusted-key): the server's assignment vouches for the signer key, the agent installs the
 * artifact, keeps the endorsement with it and checks it again on every load without an
 * assignment (start, rollback from disk). Signer keys the server did not vouch for are refused.
 */

/** Where the agent keeps the server's endorsement, next to the model (docs/agent.md: models/<id>/signer.json). */
const SIGNER_FILE = 'signer.json';

let world: AgentWorld;
/** The CI key: signs w1 and w2; the server (world.privateKey) trusts it. */
const ci = generateKeyPairSync('ed25519');
let w1: TestArtifact;
let w2: TestArtifact;

before(async () => {
  world = await createAgentWorld();
  const dir = join(world.dir, 'ci-artifacts');
  await mkdir(dir, { recursive: true });
  const artifacts: TestArtifact[] = [];
  for (const [name, version, seed] of [['w1', '11', 111], ['w2', '12', 122]] as const) {
    await writeVersionedArtifact(join(dir, name), version, seed, [8], ci.privateKey);
    const { id, manifest } = await world.http.addArtifact(join(dir, name));
    artifacts.push({ id, version, dir: join(dir, name), manifest });
  }
  [w1, w2] = artifacts as [TestArtifact, TestArtifact];
});
after(() => world.close());

/** What the server sends: the server's endorsement of the CI key for `artifact`. */
const vouched = (artifact: TestArtifact, key: KeyObject = ci.publicKey, endorser: KeyObject = world.privateKey): Signer => endorseSigner(artifact.id, key, endorser);

function assign(deviceId: string, artifact: TestArtifact, role: Role, signer: Signer | undefined, messageKey: KeyObject = world.privateKey) {
  const input = { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: world.http.url, ...(signer ? { signer } : {}) };
  return publishAssignment(world.harness.broker, deviceId, input, { privateKey: messageKey });
}

/** The device's answer to `id` (fails at once on any other outcome than `outcome`, naming it). */
async function answer(id: string): Promise<Extract<Report, { kind: 'assignment' }>> {
  const report = await world.waitForReport(isAnswerTo(id), 15_000);
  assert.equal(report.kind, 'assignment');
  return report as Extract<Report, { kind: 'assignment' }>;
}

async function expectOutcome(id: string, outcome: string): Promise<void> {
  const report = await answer(id);
  assert.equal(`${report.outcome}${report.reason ? ` (${report.reason})` : ''}`, outcome);
}

async function dataDir(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `fleetprune-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true })); // registered first: runs after the agents stopped
  return dir;
}

async function droppedBadSignature(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('fleetprune_agent_dropped_messages_total{') && line.includes('reason="bad-signature"'))
    .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

const ROW = [5.1, 3.5, 1.4, 0.2, 1, 2, 3];

test('an artifact signed by a key the server vouches for is installed, served, re-verified after a restart and rolled back to from disk', async (t) => {
  const dir = await dataDir(t, 'signer-1');
  const config = await world.config('signer-1', { site: 'osaka' });
  const first = await startAgent(t, world, 'signer-1', { config, dataDir: dir });
  await waitFor(() => first.agent.connected, 5000, 'agent connected');

  const a1 = await assign('signer-1', w1, 'active', vouched(w1));
  await expectOutcome(a1.id, 'activated');
  assert.equal((await first.predict({ rows: [ROW] })).status, 200);
  const a2 = await assign('signer-1', w2, 'active', vouched(w2));
  await expectOutcome(a2.id, 'activated');
  assert.deepEqual([first.agent.slots.active?.sha256, first.agent.slots.previous?.sha256], [w2.id, w1.id]);

  // Restarted: both slots are verified again from disk, with the kept endorsements (a model that
  // failed would be dropped from its slot), and the active one is served.
  await first.stop();
  const second = await startAgent(t, world, 'signer-1', { config, dataDir: dir });
  assert.deepEqual([second.agent.slots.active?.sha256, second.agent.slots.previous?.sha256], [w2.id, w1.id]);
  assert.ok(existsSync(join(dir, 'models', w1.id, SIGNER_FILE)), 'the endorsement is kept with the model');
  const served = await second.predict({ rows: [ROW] });
  assert.equal(served.status, 200, JSON.stringify(served.json));
  await waitFor(() => second.agent.connected, 5000, 'agent connected again');

  // A fleet rollback: back to w1 from disk, without an assignment and without a download.
  const blobsBefore = world.http.blobRequests().length;
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['signer-1'] }, { privateKey: world.privateKey });
  await expectOutcome(rollback.id, 'rolled-back');
  assert.equal(second.agent.slots.active?.sha256, w1.id);
  assert.equal((await second.predict({ rows: [ROW] })).status, 200);
  // Assigning the previous version (w2) as active is an activation from disk (no download), whatever the assignment carries.
  const back = await assign('signer-1', w2, 'active', undefined);
  await expectOutcome(back.id, 'activated');
  assert.equal(second.agent.slots.active?.sha256, w2.id);
  assert.equal(world.http.blobRequests().length, blobsBefore, 'nothing downloaded');

  // As a candidate, too (benchmarked next to the active model, both loaded with their endorsements).
  const candidate = await assign('signer-1', w1, 'candidate', vouched(w1));
  await expectOutcome(candidate.id, 'installed');
  const benchmark = await world.waitForReport((report) => report.kind === 'benchmark' && report.candidate.sha256 === w1.id, 15_000);
  assert.equal(benchmark.kind === 'benchmark' && benchmark.active?.sha256, w2.id);
});

test('a model whose kept endorsement is missing, damaged, a FIFO or for another artifact fails verification', { timeout: 90_000 }, async (t) => {
  const dir = await dataDir(t, 'signer-2');
  const config = await world.config('signer-2', { site: 'osaka' });
  const first = await startAgent(t, world, 'signer-2', { config, dataDir: dir });
  await waitFor(() => first.agent.connected, 5000, 'agent connected');
  for (const artifact of [w1, w2]) await expectOutcome((await assign('signer-2', artifact, 'active', vouched(artifact))).id, 'activated');
  await first.stop();

  // w2 (active): its endorsement replaced by the server's endorsement of the same key for w1.
  await writeFile(join(dir, 'models', w2.id, SIGNER_FILE), await readFile(join(dir, 'models', w1.id, SIGNER_FILE)));
  // w1 (previous): its endorsement a FIFO nobody writes to (a plain read of it would wait for good).
  await rm(join(dir, 'models', w1.id, SIGNER_FILE));
  makeFifo(join(dir, 'models', w1.id, SIGNER_FILE));
  const blobsBefore = world.http.blobRequests().length;
  const second = await startAgent(t, world, 'signer-2', { config, dataDir: dir });
  assert.deepEqual({ ...second.agent.slots }, { active: null, candidate: null, previous: null }, 'neither is trusted blindly');
  assert.equal((await second.predict({ rows: [ROW] })).status, 503);

  // Both are downloaded again with their endorsements: w2 by the server's retained assignment,
  // taken again to restore it; w1 when it is assigned again (after it, w2 is activated from disk).
  await waitFor(() => second.agent.slots.active?.sha256 === w2.id, 15_000, 'w2 restored');
  await expectOutcome((await assign('signer-2', w1, 'active', vouched(w1))).id, 'activated');
  await expectOutcome((await assign('signer-2', w2, 'active', vouched(w2))).id, 'activated');
  assert.equal(world.http.blobRequests().length, blobsBefore + 2, 'downloaded again');

  // A damaged signer.json (JSON that is no endorsement) next to the previous model: a rollback
  // from disk is refused; the server's assignment of that version downloads it again.
  await writeFile(join(dir, 'models', w1.id, SIGNER_FILE), '{"keyId": "nope"}\n');
  const rollback = await answer((await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['signer-2'] }, { privateKey: world.privateKey })).id);
  assert.equal(rollback.outcome, 'refused');
  assert.match(rollback.reason ?? '', /^previous model unusable: .*not a valid signer endorsement$/);
  assert.equal(second.agent.slots.active?.sha256, w2.id);
  await expectOutcome((await assign('signer-2', w1, 'active', vouched(w1))).id, 'activated');
  assert.equal(world.http.blobRequests().length, blobsBefore + 3, 'downloaded again');
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'models', w1.id, SIGNER_FILE), 'utf8')), vouched(w1));
});

test('a signer key the server did not vouch for is refused, and a vouching message the server did not sign is dropped', async (t) => {
  const dir = await dataDir(t, 'signer-3');
  const { agent, url } = await startAgent(t, world, 'signer-3', { dataDir: dir });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const other = generateKeyPairSync('ed25519');

  // No signer: the reviewer's refusal, as before.
  const bare = await answer((await assign('signer-3', w1, 'active', undefined)).id);
  assert.equal(bare.outcome, 'refused');
  assert.match(bare.reason ?? '', /^manifest signature: made with key [0-9a-f]{16}, not the server's key [0-9a-f]{16}, and the server vouched for no other key$/);
  // The server vouched for another key than the one that signed the manifest.
  const mismatch = await answer((await assign('signer-3', w1, 'active', vouched(w1, other.publicKey))).id);
  assert.equal(mismatch.outcome, 'refused');
  assert.match(mismatch.reason ?? '', /but the server vouched for key/);
  // An endorsement the server did not make (the CI key vouching for itself), in a message the server signed.
  const selfMade = await answer((await assign('signer-3', w1, 'active', vouched(w1, ci.publicKey, ci.privateKey))).id);
  assert.equal(selfMade.outcome, 'refused');
  assert.match(selfMade.reason ?? '', /does not carry the server's signature for this artifact/);
  // The server's endorsement of the CI key, but for another artifact.
  const elsewhere = await answer((await assign('signer-3', w1, 'active', vouched(w2))).id);
  assert.equal(elsewhere.outcome, 'refused');
  assert.match(elsewhere.reason ?? '', /does not carry the server's signature for this artifact/);

  // A well-formed endorsement in a message not signed by the server (someone with broker access): dropped, never answered.
  const forged = await assign('signer-3', w1, 'active', vouched(w1, ci.publicKey, ci.privateKey), ci.privateKey);
  await waitFor(async () => (await droppedBadSignature(url)) === 1, 5000, 'the forged assignment dropped');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(world.harness.ingest.reports.filter(isAnswerTo(forged.id)).length, 0, 'never answered');
  assert.equal(agent.slots.active, null);
  assert.equal(existsSync(join(dir, 'models', w1.id)), false, 'nothing installed');
});

test("models of a vouched-for signer are not deleted either when the agent's config trusts another server's key: the start stops, and the files stay", async (t) => {
  const dir = await dataDir(t, 'signer-wrongkey');
  const config = await world.config('signer-wrongkey', { site: 'osaka' });
  const first = await startAgent(t, world, 'signer-wrongkey', { config, dataDir: dir });
  await waitFor(() => first.agent.connected, 5000, 'agent connected');
  const a1 = await assign('signer-wrongkey', w1, 'active', vouched(w1));
  await expectOutcome(a1.id, 'activated');
  await first.agent.idle();
  await first.stop();

  const wrong = { ...config, serverPublicKey: generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString() };
  await assert.rejects(startAgent(t, world, 'signer-wrongkey', { config: wrong, dataDir: dir }), /are signed with key \S+, but this agent's config trusts server key \S+ \(serverPublicKey\).*Nothing on disk was changed$/);
  assert.ok(existsSync(join(dir, 'models', w1.id, 'model.onnx')), 'the model is still on disk');
  assert.ok(existsSync(join(dir, 'models', w1.id, SIGNER_FILE)), 'with its endorsement');
  const again = await startAgent(t, world, 'signer-wrongkey', { config, dataDir: dir });
  assert.equal(again.agent.slots.active?.sha256, w1.id);
});

test("the only model's endorsement damaged on disk (a changed signature byte) under the config the agent last ran with is a damaged file: dropped and downloaded again, not a refusal to start", async (t) => {
  const dir = await dataDir(t, 'signer-flip');
  const config = await world.config('signer-flip', { site: 'osaka' });
  const first = await startAgent(t, world, 'signer-flip', { config, dataDir: dir });
  await waitFor(() => first.agent.connected, 5000, 'agent connected');
  await expectOutcome((await assign('signer-flip', w1, 'active', vouched(w1))).id, 'activated');
  await first.agent.idle();
  await first.stop();

  const file = join(dir, 'models', w1.id, SIGNER_FILE);
  const endorsement = JSON.parse(await readFile(file, 'utf8')) as Signer;
  const flipped = `${endorsement.signature[0] === 'A' ? 'B' : 'A'}${endorsement.signature.slice(1)}`;
  await writeFile(file, JSON.stringify({ ...endorsement, signature: flipped }));
  const blobsBefore = world.http.blobRequests().length;
  // It starts (it stopped, blaming its config, and a service manager restarted it for good),
  // and the server's retained assignment restores the model.
  const second = await startAgent(t, world, 'signer-flip', { config, dataDir: dir });
  await waitFor(() => second.agent.slots.active?.sha256 === w1.id, 15_000, 'w1 restored');
  assert.equal(world.http.blobRequests().length, blobsBefore + 1, 'downloaded again');
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), vouched(w1));
  // Stopped here, its work done, before the data dir goes: a restore still writing (state, garbage
  // collection) when the directory was removed failed the cleanup (ENOTEMPTY) and left the agent running.
  await second.agent.idle();
  await second.stop();
});
