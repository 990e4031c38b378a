import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test, type TestContext } from 'node:test';
import { publishAssignmentPayload } from '../../server/fleet/fleet-publisher.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import type { Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

/**
 * Models dropped at start for missing or damaged files are restored by taking the server's
 * retained assignment again, and only that one: assignments are signed and numbered per device,
 * and the restore must not become a way to replay an old one.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const ROW = [[1, 2, 3, 4, 5, 6, 7]];
const reasonOf = (report: Report) => (report.kind === 'assignment' ? (report.reason ?? '') : '');

/** A device's config and data dir, kept across agent restarts. */
async function device(t: TestContext, deviceId: string) {
  const dataDir = await mkdtemp(join(tmpdir(), `fleetprune-${deviceId}-`));
  const config = await world.config(deviceId);
  // Deferred first, so it runs after every agent's own stop (deferCleanup is last in, first out;
  // a plain t.after registered first ran first, removing the directory under a running agent).
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true }));
  return { dataDir, start: () => startAgent(t, world, deviceId, { config, dataDir, assignmentResyncMs: 300 }) };
}

const modelDir = (dataDir: string, artifact: TestArtifact) => join(dataDir, 'models', artifact.id);

test('a lost model is restored only by the newest assignment taken: an older one replayed is not taken, nor the newest one when it names another model', async (t) => {
  const dev = await device(t, 'lost-2');
  const first = await dev.start();
  const v1 = await world.assign('lost-2', world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'));
  const v2 = await world.assign('lost-2', world.v2, 'active');
  await world.waitForReport(isOutcome(v2.id, 'activated'));
  const v3 = await world.assign('lost-2', world.v3, 'candidate');
  await world.waitForReport(isBenchmarkFor(world.v3.id, 'lost-2'));
  await first.agent.idle();
  await first.stop();

  await rm(modelDir(dev.dataDir, world.v2), { recursive: true });
  const downloads = world.http.blobRequests().length;
  const second = await dev.start();
  assert.deepEqual([second.agent.slots.active?.version, second.agent.slots.previous, second.agent.slots.candidate?.version], ['1', null, '3'], 'serving the previous model');
  // The loss is reported as a refusal of the assignment that had installed v2.
  const loss = await world.waitForReport(isOutcome(v2.id, 'refused'));
  assert.match(reasonOf(loss), /^dropped from the active slot, its files on the device unusable: .*manifest\.json: missing/);

  // The retained assignment (v3 candidate, the newest) names no lost model: handled, not taken again.
  // v2's assignment, replayed by someone with broker access, is older than the newest taken: refused.
  await publishAssignmentPayload(world.harness.broker, 'lost-2', v2);
  await new Promise((resolve) => setTimeout(resolve, 700)); // and two resubscriptions (the retained assignment again)
  await second.agent.idle();
  assert.equal(second.agent.slots.active?.version, '1', 'v2 not restored by a replay');
  assert.equal(world.http.blobRequests().length, downloads, 'nothing downloaded');
  assert.deepEqual(
    world.harness.ingest.reports.filter((report) => report.kind === 'assignment' && [v2.id, v3.id].includes(report.assignmentId)).map((report) => report.kind === 'assignment' && `${report.version} ${report.outcome}`),
    ['2 activated', '3 installed', '2 refused'],
  );

  // The server's next assignment brings v2 back, downloaded: the restore ends with it.
  await publishAssignmentPayload(world.harness.broker, 'lost-2', v3); // the retained one again, as the broker holds it
  const again = await world.assign('lost-2', world.v2, 'active');
  await world.waitForReport(isOutcome(again.id, 'activated'));
  assert.equal((await second.predict({ rows: ROW })).json.sha256, world.v2.id);
  assert.equal(JSON.parse(await readFile(join(dev.dataDir, 'state.json'), 'utf8')).lost, undefined);
});

test('a damaged candidate is downloaded again by its retained assignment, even from a state file that kept no record of who installed it', async (t) => {
  const dev = await device(t, 'lost-3');
  const first = await dev.start();
  const v1 = await world.assign('lost-3', world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'));
  const candidate = await world.assign('lost-3', world.v2, 'candidate');
  await world.waitForReport(isBenchmarkFor(world.v2.id, 'lost-3'));
  await first.agent.idle();
  await first.stop();

  // A state file written by an agent before it recorded installers, and a flipped byte in the candidate.
  const statePath = join(dev.dataDir, 'state.json');
  const { installedBy: _installedBy, candidateAssignmentId: _candidateAssignmentId, ...older } = JSON.parse(await readFile(statePath, 'utf8'));
  await writeFile(statePath, JSON.stringify(older));
  const onnx = join(modelDir(dev.dataDir, world.v2), 'model.onnx');
  const bytes = await readFile(onnx);
  bytes[bytes.length - 9]! ^= 0x01;
  await writeFile(onnx, bytes);

  const second = await dev.start();
  const slots = () => second.agent.slots;
  assert.equal(slots().candidate, null, 'the damaged candidate dropped');
  // Nothing on record installed it: the loss is reported to the assignment that restores it.
  const loss = await world.waitForReport(isOutcome(candidate.id, 'refused'));
  assert.match(reasonOf(loss), /^dropped from the candidate slot, its files on the device unusable: .*model\.onnx: sha256 mismatch$/);
  const answers = () => world.harness.ingest.reports.filter(isAnswerTo(candidate.id)).map((report) => report.kind === 'assignment' && report.outcome);
  await waitFor(() => answers().length === 3, 15_000, 'the candidate installed again');
  assert.deepEqual(answers(), ['installed', 'refused', 'installed']);
  await second.agent.idle();
  assert.equal(slots().candidate?.sha256, world.v2.id);
  assert.equal(sha256Hex(await readFile(onnx)), world.v2.manifest.files['model.onnx']!.sha256, 'the signed bytes again');
  assert.equal(slots().active?.sha256, world.v1.id);
  assert.deepEqual((await readdir(join(dev.dataDir, 'models'))).sort(), [world.v1.id, world.v2.id].sort());
});

test('a lost active model whose previous one is also the candidate: the previous one is served, and no longer counts as the candidate', async (t) => {
  const dev = await device(t, 'lost-both');
  const first = await dev.start();
  for (const [artifact, role] of [[world.v1, 'active'], [world.v2, 'active'], [world.v1, 'candidate']] as const) {
    const assignment = await world.assign('lost-both', artifact, role);
    await world.waitForReport(isOutcome(assignment.id, role === 'active' ? 'activated' : 'installed'));
  }
  await first.agent.idle();
  assert.deepEqual([first.agent.slots.active?.version, first.agent.slots.candidate?.version, first.agent.slots.previous?.version], ['2', '1', '1']);
  await first.stop();

  await rm(modelDir(dev.dataDir, world.v2), { recursive: true });
  const second = await dev.start();
  assert.deepEqual([second.agent.slots.active?.version, second.agent.slots.candidate, second.agent.slots.previous], ['1', null, null]);
  assert.equal(JSON.parse(await readFile(join(dev.dataDir, 'state.json'), 'utf8')).candidate, null, 'and so on disk');
  assert.equal((await second.predict({ rows: ROW })).json.sha256, world.v1.id);
});

test('a state file naming its active model otherwise than the signed manifest does drops it from the slot: the agent never serves a model under a name it was not signed with', async (t) => {
  const dev = await device(t, 'lost-5');
  const first = await dev.start();
  const v1 = await world.assign('lost-5', world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'));
  const v2 = await world.assign('lost-5', world.v2, 'active');
  await world.waitForReport(isOutcome(v2.id, 'activated'));
  await first.agent.idle();
  await first.stop();

  const statePath = join(dev.dataDir, 'state.json');
  const state = JSON.parse(await readFile(statePath, 'utf8'));
  assert.equal(state.active.sha256, world.v2.id);
  await writeFile(statePath, JSON.stringify({ ...state, active: { ...state.active, model: 'other', version: '999' } }));

  const second = await dev.start();
  assert.deepEqual([second.agent.slots.active?.version, second.agent.slots.active?.sha256], ['1', world.v1.id], 'serving the previous model');
  const answer = await second.predict({ rows: ROW });
  assert.deepEqual([answer.json.model, answer.json.version], [world.v1.manifest.name, '1']);
  const loss = await world.waitForReport(isOutcome(v2.id, 'refused'));
  assert.match(reasonOf(loss), new RegExp(`manifest: model is ${world.v2.manifest.name}, but .*state\\.json \\(active\\) names other$`));
});
