import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { publishAssignment, publishAssignmentPayload, publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import { assignmentSignatureVerifies, commandSignatureVerifies, signAssignment } from '../../shared/protocol/message-signature.ts';
import { FLEET_COMMANDS_TOPIC } from '../../shared/protocol/topics.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const input = (artifact: TestArtifact, role: 'active' | 'candidate') => ({ model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: world.http.url });

/** The agent's dropped-message counter for `reason`, from its /metrics. */
async function dropped(url: string, reason: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('fleetprune_agent_dropped_messages_total{') && line.includes(`reason="${reason}"`))
    .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

test('signatures bind a message to the server key and, for an assignment, to its device; any change breaks them', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const unsigned = { schema: 1 as const, id: 'assign-00000001', issuedAt: '2026-01-01T00:00:00.000Z', model: 'iris', version: '2', sha256: 'a'.repeat(64), url: 'http://s/api/artifacts/a/manifest.json', role: 'active' as const, seq: 5 };
  const signed = signAssignment('dev-a', unsigned, privateKey);
  assert.equal(assignmentSignatureVerifies('dev-a', signed, publicKey), true);
  assert.equal(assignmentSignatureVerifies('dev-b', signed, publicKey), false, 'another device');
  assert.equal(assignmentSignatureVerifies('dev-a', { ...signed, version: '1' }, publicKey), false, 'another version');
  assert.equal(assignmentSignatureVerifies('dev-a', { ...signed, seq: 6 }, publicKey), false, 'another number');
  assert.equal(assignmentSignatureVerifies('dev-a', { ...signed, extra: true }, publicKey), false, 'a field added');
  assert.equal(assignmentSignatureVerifies('dev-a', signed, generateKeyPairSync('ed25519').publicKey), false, 'another key');
  assert.equal(assignmentSignatureVerifies('dev-a', { ...signed, signature: undefined }, publicKey), false, 'unsigned');
  assert.equal(commandSignatureVerifies(signed, publicKey), false, 'an assignment is not a command');
  assert.equal(assignmentSignatureVerifies('dev-a', 'text', publicKey), false);
});

test('the agent acts only on assignments the server signed for it, and never on an older one replayed', async (t) => {
  const { logger, lines } = recordingLogger();
  const { agent, url } = await startAgent(t, world, 'trust-1', { logger });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const signer = { privateKey: world.privateKey };

  const first = await publishAssignment(world.harness.broker, 'trust-1', input(world.v1, 'active'), signer);
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const second = await publishAssignment(world.harness.broker, 'trust-1', input(world.v2, 'active'), signer);
  await world.waitForReport(isOutcome(second.id, 'activated'));
  assert.equal(agent.slots.active?.sha256, world.v2.id);

  // Someone with broker access: the very same assignment again is only ignored (the device handled
  // it). An older one the server signed for this device that it never took (numbered between the
  // two, as it would be had the device missed it) is a replay: a downgrade to v1, refused.
  await publishAssignmentPayload(world.harness.broker, 'trust-1', first);
  const missed = signAssignment('trust-1', { ...first, id: 'assign-missed-0001', seq: first.seq + 1 }, world.privateKey);
  assert.ok(missed.seq < second.seq);
  await publishAssignmentPayload(world.harness.broker, 'trust-1', missed);
  await waitFor(async () => (await dropped(url, 'replayed')) === 1, 5000, 'the replay refused');
  // One signed by another key, and one the server signed for another device.
  const forged = await publishAssignment(world.harness.broker, 'trust-1', input(world.v1, 'active'), { privateKey: generateKeyPairSync('ed25519').privateKey });
  const elsewhere = signAssignment('someone-else', { ...first, id: 'assign-elsewhere', seq: second.seq + 1000 }, world.privateKey);
  await publishAssignmentPayload(world.harness.broker, 'trust-1', elsewhere);
  await waitFor(async () => (await dropped(url, 'bad-signature')) === 2, 5000, 'the forged and the misdirected assignment refused');
  // Said so that an operator whose server's key changed knows what to do (it said "without the server's signature").
  // Both counted; logged once (a line a minute per stream and reason: a flood cannot fill the device's disk).
  const refusals = lines.filter((line) => line.msg.startsWith('refused an assignment whose signature does not verify'));
  assert.equal(refusals.length, 1);
  assert.match(refusals[0]!.msg, /with the server key in the device's config \(serverPublicKey\): forged or damaged, or the server's key changed since the device was enrolled \(then enroll it again\)$/);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(agent.slots.active?.sha256, world.v2.id, 'still on v2');
  assert.equal(world.harness.ingest.reports.filter((r) => [forged.id, elsewhere.id].includes(r.assignmentId ?? '') || r.assignmentId === missed.id).length, 0, 'never answered');

  // The server's next assignment is taken.
  const third = await publishAssignment(world.harness.broker, 'trust-1', { ...input(world.v1, 'active'), revert: true }, signer);
  await world.waitForReport(isOutcome(third.id, 'rolled-back')); // v1 is the previous model: back from disk
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('fleet commands: a signed rollback is taken once; an old one replayed, or an unsigned one, is refused', async (t) => {
  const config = await world.config('trust-2', { site: 'osaka' });
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-trust-'));
  const { agent, url, stop } = await startAgent(t, world, 'trust-2', { config, dataDir });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const signer = { privateKey: world.privateKey };
  for (const artifact of [world.v1, world.v2]) {
    const assigned = await publishAssignment(world.harness.broker, 'trust-2', input(artifact, 'active'), signer);
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['trust-2'] }, signer);
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  const back = await publishAssignment(world.harness.broker, 'trust-2', input(world.v2, 'active'), signer);
  await world.waitForReport(isOutcome(back.id, 'activated')); // v2 is the previous model: activated from disk (not a revert: no rollback)

  // A rollback the server signed before the one the device took, which it never got: a replay.
  await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['trust-2'] }, { ...signer, seq: rollback.seq - 1 }, 'rollback-replayed');
  await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['trust-2'] }, { privateKey: generateKeyPairSync('ed25519').privateKey });
  await waitFor(async () => (await dropped(url, 'replayed')) === 1 && (await dropped(url, 'bad-signature')) === 1, 5000, 'both refused');
  assert.equal(agent.slots.active?.sha256, world.v2.id);
  assert.equal(world.harness.ingest.reports.filter(isAnswerTo('rollback-replayed')).length, 0);

  // Restarted, the agent still knows the newest command it took.
  await stop();
  const again = await startAgent(t, world, 'trust-2', { dataDir, config });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after both agents stopped
  await waitFor(() => again.agent.connected, 5000, 'agent connected again');
  await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['trust-2'] }, { ...signer, seq: rollback.seq - 2 }, 'rollback-replayed-2');
  await waitFor(async () => (await dropped(again.url, 'replayed')) === 1, 5000, 'the replay refused after a restart');
  assert.equal(again.agent.slots.active?.sha256, world.v2.id);
});

test('a flood of malformed messages is dropped and counted, each one, and logged in one line (a line a minute per kind of message and reason)', async (t) => {
  const { logger, lines } = recordingLogger();
  const { agent, url } = await startAgent(t, world, 'trust-flood', { logger });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  // Connected comes before the broker's answer to the agent's subscription: a command sent in
  // between reaches nobody. One refused for its signature (counted apart) shows it is subscribed.
  await waitFor(async () => {
    await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: ['trust-flood'] }, { privateKey: generateKeyPairSync('ed25519').privateKey });
    await new Promise((resolve) => setTimeout(resolve, 100));
    return (await dropped(url, 'bad-signature')) > 0;
  }, 10_000, 'the agent subscribed to the fleet commands');
  for (let i = 0; i < 200; i++) await world.harness.broker.publish(FLEET_COMMANDS_TOPIC, Buffer.from(JSON.stringify({ schema: 1, bad: i })), { qos: 0, retain: false });
  let counted = 0;
  await waitFor(async () => (counted = await dropped(url, 'invalid-payload')) >= 200, 30_000, 'every malformed command counted').catch((error) => {
    throw new Error(`${error.message} (${counted} of 200)`);
  });
  assert.equal(counted, 200);
  assert.deepEqual(lines.filter((line) => line.msg === 'dropped an incoming message').map((line) => line.reason), ['invalid-payload']);
  // The flood did not stop the agent taking the server's messages.
  const taken = await publishAssignment(world.harness.broker, 'trust-flood', input(world.v1, 'active'), { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(taken.id, 'activated'));
});
