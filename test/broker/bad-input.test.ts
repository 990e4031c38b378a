import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MAX_PAYLOAD_BYTES } from '../../shared/protocol/limits.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { reportsTopic, statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { engineMissing, findExecutable } from '../helpers/engines.ts';
import { mosquittoPub, waitFor } from '../helpers/mqtt-clients.ts';
import { BROKER_KINDS, harnessFor } from './broker-harnesses.ts';

const ACCESS = { url: 'http://127.0.0.1:9', token: 't', publicKey: generateKeyPairSync('ed25519').publicKey };

function validReport(deviceId: string): string {
  return JSON.stringify({
    schema: 1, id: newMessageId(), kind: 'assignment', deviceId, createdAt: new Date().toISOString(), assignmentId: newMessageId(),
    outcome: 'refused', role: 'candidate', model: 'm', version: '1', sha256: 'c'.repeat(64), reason: 'test',
  });
}

for (const kind of BROKER_KINDS) {
  test(`${kind}: malformed payloads from real mosquitto_pub processes are dropped, counted, and the server keeps working`, async (t) => {
    if (!findExecutable(['mosquitto_pub'])) return engineMissing(t, 'mosquitto_pub', 'not on PATH (apt-get install mosquitto-clients)');
    const harness = await harnessFor(t, kind);
    if (!harness) return;
    const config = await harness.enroll('dev-a', ACCESS);
    await harness.enroll('dev-b', ACCESS);
    const auth = { username: 'dev-a', password: config.broker.password, clientId: 'dev-a' };
    const url = harness.broker.url;
    const dir = await mkdtemp(join(tmpdir(), 'fleetprune-badinput-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // Over the payload limit, under the broker's device packet limit (DEVICE_MAX_PACKET_BYTES): the receiver drops it.
    const huge = join(dir, 'huge.json');
    await writeFile(huge, JSON.stringify({ schema: 1, pad: 'x'.repeat(MAX_PAYLOAD_BYTES + 1024) }));
    const binary = join(dir, 'binary.bin');
    await writeFile(binary, Buffer.concat([Buffer.from([0xff, 0xfe, 0xfd]), randomBytes(2048)]));

    const cases: { what: string; topic: string; payload: { message?: string; file?: string }; reason: string }[] = [
      { what: 'invalid JSON', topic: reportsTopic('dev-a'), payload: { message: '{"schema":1, "kind": "benchmark", ' }, reason: 'invalid-json' },
      { what: 'wrong types', topic: reportsTopic('dev-a'), payload: { message: JSON.stringify({ ...JSON.parse(validReport('dev-a')), outcome: 7, createdAt: 'yesterday' }) }, reason: 'invalid-payload' },
      { what: 'wrong telemetry types', topic: telemetryTopic('dev-a'), payload: { message: '{"schema":1,"deviceId":"dev-a","rssBytes":"lots"}' }, reason: 'invalid-payload' },
      { what: 'huge payload', topic: reportsTopic('dev-a'), payload: { file: huge }, reason: 'too-large' },
      { what: 'binary', topic: reportsTopic('dev-a'), payload: { file: binary }, reason: 'not-utf8' },
      { what: 'a report claiming another device', topic: reportsTopic('dev-a'), payload: { message: validReport('dev-b') }, reason: 'device-mismatch' },
      { what: 'a status claiming another device', topic: statusTopic('dev-a'), payload: { message: JSON.stringify({ schema: 1, deviceId: 'dev-b', online: true, since: new Date().toISOString() }) }, reason: 'device-mismatch' },
    ];
    let expected = 0;
    for (const { what, topic, payload, reason } of cases) {
      const result = await mosquittoPub(url, auth, topic, payload);
      assert.equal(result.code, 0, `mosquitto_pub (${what}): ${result.stderr}`);
      expected++;
      await waitFor(async () => (await harness.droppedCount()) >= expected, 5000, `drop of ${what}`);
      assert.equal(await harness.droppedCount(reason), cases.filter((c, i) => c.reason === reason && i < expected).length, `${what} is counted as ${reason}`);
    }
    assert.equal(harness.ingest.reports.length, 0, 'nothing malformed was ingested');

    // Above the broker's packet limit the broker itself refuses it; nothing reaches the receiver.
    const oversized = join(dir, 'oversized.bin');
    await writeFile(oversized, Buffer.alloc(2 * 1024 * 1024, 0x41));
    await mosquittoPub(url, auth, reportsTopic('dev-a'), { file: oversized });

    // Still alive and still working: a valid report from the same device is ingested.
    const result = await mosquittoPub(url, auth, reportsTopic('dev-a'), { message: validReport('dev-a') });
    assert.equal(result.code, 0, result.stderr);
    await waitFor(() => harness.ingest.reports.length === 1, 5000, 'the valid report');
    assert.equal(await harness.droppedCount(), expected, 'the oversized packet never reached the receiver');
  });
}
