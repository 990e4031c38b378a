import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { MAX_PAYLOAD_BYTES } from '../../shared/protocol/limits.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { encodePayload, parseMessage } from '../../shared/protocol/parse-message.ts';
import type { Assignment, BenchmarkReport, FleetCommand, Status, Telemetry } from '../../shared/protocol/payloads.ts';
import { selectorMatches } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC, assignmentTopic, deviceTopic, parseTopic, reportsTopic, statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';

const SHA = 'a'.repeat(64);
const NOW = '2026-01-02T03:04:05.000Z';

const SIGNATURE = `${'A'.repeat(86)}==`;
const assignment: Assignment = { schema: 1, id: newMessageId(), issuedAt: NOW, model: 'iris', version: '3', sha256: SHA, url: `http://server:8080/api/artifacts/${SHA}/manifest.json`, role: 'candidate', seq: 7, signature: SIGNATURE };
const status: Status = { schema: 1, deviceId: 'dev-a', online: true, since: NOW };
const ref = { model: 'iris', version: '2', sha256: SHA };
const telemetry: Telemetry = { schema: 1, deviceId: 'dev-a', sentAt: NOW, uptimeSeconds: 12.5, cpuPercent: 3.2, rssBytes: 80e6, active: ref, candidate: null, previous: null };
const modelBenchmark = {
  ...ref,
  role: 'candidate' as const,
  score: { accuracy: 0.9, correct: 90, total: 100 },
  latencyMs: { p50: 0.05, p95: 0.08, p99: 0.1, samples: 500 },
  batchSize: 64,
  throughputRowsPerSecond: 200000,
  loadTimeMs: 3.1,
  rssIncreaseBytes: 1024,
};
const report: BenchmarkReport = {
  schema: 1,
  id: newMessageId(),
  kind: 'benchmark',
  deviceId: 'dev-a',
  createdAt: NOW,
  assignmentId: assignment.id,
  holdout: { rows: 100, fingerprint: 'f', task: 'classification' },
  active: { ...modelBenchmark, role: 'active' },
  candidate: modelBenchmark,
};
const command: FleetCommand = { schema: 1, id: newMessageId(), issuedAt: NOW, command: 'rollback', selector: { labels: { site: 'osaka' } }, seq: 3, signature: SIGNATURE };

test('every payload round-trips through encodePayload and parseMessage', () => {
  const cases = [
    [assignmentTopic('dev-a'), assignment, 'assignment'],
    [statusTopic('dev-a'), status, 'status'],
    [telemetryTopic('dev-a'), telemetry, 'telemetry'],
    [reportsTopic('dev-a'), report, 'reports'],
    [FLEET_COMMANDS_TOPIC, command, 'commands'],
  ] as const;
  for (const [topic, payload, kind] of cases) {
    const result = parseMessage(topic, encodePayload(payload));
    assert.ok(result.ok, `${kind}: ${!result.ok && result.detail}`);
    assert.equal(result.message.kind, kind);
    assert.deepEqual(result.message.payload, payload);
  }
});

test('topics: layout, parsing, and device ids that cannot escape their level', () => {
  assert.equal(reportsTopic('dev-a'), 'fleetprune/v1/devices/dev-a/reports');
  assert.deepEqual(parseTopic('fleetprune/v1/devices/dev-a/status'), { kind: 'status', deviceId: 'dev-a' });
  assert.equal(parseTopic('fleetprune/v1/devices/dev-a/other'), undefined);
  assert.equal(parseTopic('fleetprune/v2/devices/dev-a/status'), undefined);
  assert.equal(parseTopic('fleetprune/v1/devices/a/b/status'), undefined);
  for (const bad of ['a/b', '+', '#', '', 'x'.repeat(65), ' a']) assert.throws(() => deviceTopic(bad, 'status'), { message: `invalid device id ${JSON.stringify(bad)}` }, bad);
});

function rejects(topic: string, payload: Uint8Array | string, reason: string) {
  const result = parseMessage(topic, typeof payload === 'string' ? Buffer.from(payload) : payload);
  assert.equal(result.ok, false, `expected ${reason}`);
  if (!result.ok) {
    assert.equal(result.reason, reason, result.detail);
    assert.ok(result.detail.length > 0 && !result.detail.includes('\n'));
  }
}

function detailOf(topic: string, payload: string): string {
  const result = parseMessage(topic, Buffer.from(payload));
  return result.ok ? '' : result.detail;
}

test('parseMessage rejects bad input with a reason and never throws', () => {
  const topic = reportsTopic('dev-a');
  rejects(topic, '{"schema":1,', 'invalid-json');
  rejects(topic, 'not json at all', 'invalid-json');
  rejects(topic, '', 'empty');
  rejects(topic, JSON.stringify({ ...report, candidate: { ...modelBenchmark, loadTimeMs: 'fast' } }), 'invalid-payload');
  rejects(topic, JSON.stringify({ ...report, id: 42 }), 'invalid-payload');
  rejects(topic, JSON.stringify([1, 2, 3]), 'invalid-payload');
  rejects(topic, 'null', 'invalid-payload');
  rejects(topic, JSON.stringify({ ...report, schema: 2 }), 'unsupported-schema');
  rejects(topic, Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20), 'too-large');
  rejects(topic, JSON.stringify({ ...report, pad: 'x'.repeat(MAX_PAYLOAD_BYTES) }), 'too-large');
  rejects(topic, Buffer.from([0xff, 0xfe, 0x00, 0x81, 0xc3, 0x28]), 'not-utf8');
  rejects(topic, randomBytes(4096), 'not-utf8');
  rejects(topic, JSON.stringify({ ...report, deviceId: 'dev-b' }), 'device-mismatch');
  rejects(telemetryTopic('dev-a'), JSON.stringify({ ...telemetry, deviceId: 'dev-b' }), 'device-mismatch');
  rejects(statusTopic('dev-a'), JSON.stringify({ ...status, deviceId: 'dev-b' }), 'device-mismatch');
  rejects('some/other/topic', JSON.stringify(report), 'unknown-topic');
  rejects(assignmentTopic('dev-a'), JSON.stringify({ ...assignment, role: 'boss' }), 'invalid-payload');
  rejects(assignmentTopic('dev-a'), JSON.stringify({ ...assignment, url: 'file:///etc/passwd' }), 'invalid-payload');
  // A well-formed URL of another scheme is told apart from one that is no URL at all.
  assert.equal(detailOf(assignmentTopic('dev-a'), JSON.stringify({ ...assignment, url: 'file:///etc/passwd' })), 'url: must be an http:// or https:// URL');
  assert.equal(detailOf(assignmentTopic('dev-a'), JSON.stringify({ ...assignment, url: 'not a url' })), 'url: must be an http:// or https:// URL');
  rejects(FLEET_COMMANDS_TOPIC, JSON.stringify({ ...command, command: 'format-disk' }), 'invalid-payload');
  // The schema would turn this selector into {}, which selects every device.
  const protoSelector = JSON.stringify(command).replace('"labels":{"site":"osaka"}', '"labels":{"__proto__":"nowhere"}');
  assert.match(protoSelector, /__proto__/);
  rejects(FLEET_COMMANDS_TOPIC, protoSelector, 'invalid-payload');
  assert.match(detailOf(FLEET_COMMANDS_TOPIC, protoSelector), /^payload\.selector\.labels\.__proto__: "__proto__" is not allowed as a key$/);
  const nulReason = JSON.stringify({ schema: 1, id: newMessageId(), kind: 'assignment', deviceId: 'dev-a', createdAt: NOW, assignmentId: assignment.id, outcome: 'refused', role: 'candidate', model: 'iris', version: '3', sha256: SHA, reason: 'disk\u0000full' });
  rejects(topic, nulReason, 'invalid-payload');
  assert.match(detailOf(topic, nulReason), /^payload\.reason: contains a NUL character \(U\+0000\)$/);
  assert.ok(parseMessage(topic, Buffer.from(nulReason.replace('\\u0000', ' '))).ok, 'the same report without the NUL is valid');
  rejects(reportsTopic('dev-a'), JSON.stringify({ ...report, candidate: { ...modelBenchmark, latencyMs: { p50: -1, p95: 0, p99: 0, samples: 1 } } }), 'invalid-payload');
});

test('benchmark numbers and heartbeat counters must be possible: bounded ratios, whole counts, ordered percentiles', () => {
  const topic = reportsTopic('dev-a');
  const withCandidate = (fields: object) => JSON.stringify({ ...report, candidate: { ...modelBenchmark, ...fields } });
  const regression = { mse: 0.5, r2: 0.8, total: 100 };
  assert.ok(parseMessage(topic, Buffer.from(withCandidate({ score: regression }))).ok);
  assert.ok(parseMessage(topic, Buffer.from(withCandidate({ score: { ...regression, r2: -40 }, rssIncreaseBytes: -4096 }))).ok, 'R² is unbounded below; RSS can shrink');
  assert.ok(parseMessage(topic, Buffer.from(withCandidate({ score: { accuracy: 1, correct: 100, total: 100 } }))).ok);
  for (const [name, fields] of [
    ['accuracy 1e300 with correct > total', { score: { accuracy: 1e300, correct: 1e300, total: 1 } }],
    ['accuracy above 1', { score: { accuracy: 1.5, correct: 100, total: 100 } }],
    ['correct > total', { score: { accuracy: 1, correct: 101, total: 100 } }],
    ['fractional counts', { score: { accuracy: 0.5, correct: 50.5, total: 101 } }],
    ['no rows', { score: { accuracy: 0, correct: 0, total: 0 } }],
    ['negative MSE', { score: { ...regression, mse: -1 } }],
    ['R² above 1', { score: { ...regression, r2: 1.5 } }],
    ['unordered percentiles', { latencyMs: { p50: 5, p95: 1, p99: 2, samples: 10 } }],
    ['fractional samples', { latencyMs: { p50: 1, p95: 2, p99: 3, samples: 2.5 } }],
    ['negative throughput', { throughputRowsPerSecond: -1 }],
    ['a count beyond 2^53', { batchSize: 1e300 }],
    ['the candidate labelled active', { role: 'active' }],
  ] as const) {
    assert.equal(parseMessage(topic, Buffer.from(withCandidate(fields))).ok, false, name);
    rejects(topic, withCandidate(fields), 'invalid-payload');
  }
  rejects(topic, JSON.stringify({ ...report, holdout: { ...report.holdout, rows: 1e300 } }), 'invalid-payload');
  // Each entry's role is its slot's: a swapped one would export the candidate's numbers as the baseline's.
  assert.ok(parseMessage(topic, Buffer.from(JSON.stringify({ ...report, active: { ...modelBenchmark, role: 'active' } }))).ok);
  rejects(topic, JSON.stringify({ ...report, active: { ...modelBenchmark, role: 'candidate' } }), 'invalid-payload');
  const serving = { predictions: 10, errors: 0, shadowRows: 4, shadowAgreements: 3 };
  assert.ok(parseMessage(telemetryTopic('dev-a'), Buffer.from(JSON.stringify({ ...telemetry, serving }))).ok);
  rejects(telemetryTopic('dev-a'), JSON.stringify({ ...telemetry, serving: { ...serving, shadowAgreements: 5 } }), 'invalid-payload');
  rejects(telemetryTopic('dev-a'), JSON.stringify({ ...telemetry, serving: { ...serving, predictions: 1e300 } }), 'invalid-payload');
  rejects(telemetryTopic('dev-a'), JSON.stringify({ ...telemetry, rssBytes: 1.5 }), 'invalid-payload');
});

test('selectors match by device id and by every label', () => {
  assert.ok(selectorMatches({}, 'a', {}));
  assert.ok(selectorMatches({ labels: { site: 'osaka' } }, 'a', { site: 'osaka', hw: 'pi4' }));
  assert.ok(!selectorMatches({ labels: { site: 'osaka', hw: 'pi5' } }, 'a', { site: 'osaka', hw: 'pi4' }));
  assert.ok(selectorMatches({ deviceIds: ['a'] }, 'a', {}));
  assert.ok(!selectorMatches({ deviceIds: ['b'] }, 'a', {}));
});
