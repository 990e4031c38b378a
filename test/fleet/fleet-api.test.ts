import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { recordFailedVersion } from '../server/helpers/failed-version.ts';
import { AgentConfigSchema, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { AssignmentSchema } from '../../shared/protocol/payloads.ts';
import { assignmentTopic, reportsTopic } from '../../shared/protocol/topics.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { isOneLineError } from '../helpers/cli.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../server/helpers/test-server.ts';
import { STORE_ENGINES } from '../server/helpers/store-engines.ts';

async function fleetServer(t: TestContext): Promise<TestServer> {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: signer.privateKey, version });
    assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
  }
  return server;
}

async function enroll(server: TestServer, id: string, labels: Record<string, string>): Promise<AgentConfig> {
  const response = await server.request('POST', '/api/devices', { json: { id, labels } });
  assert.equal(response.status, 201, await response.clone().text());
  // It holds the device's password and token: no cache or proxy keeps it.
  assert.equal(response.headers.get('cache-control'), 'no-store');
  return AgentConfigSchema.parse(await response.json());
}

/** Everything a refused assignment must leave unchanged. */
async function fleetSnapshot(server: TestServer): Promise<string> {
  const { store } = server.server.ctx;
  const assignments = await store.engine.all('SELECT * FROM device_assignments ORDER BY id, device_id');
  const devices = await store.engine.all('SELECT id, retained_assignment, revoked_at FROM devices ORDER BY id');
  return JSON.stringify({ assignments, devices, audit: await store.audit.count() });
}

test('enrollment: the agent config works at the broker once, revocation refuses the device and its token', async (t) => {
  const server = await fleetServer(t);
  const config = await enroll(server, 'osaka-1', { site: 'osaka', cohort: 'pilot' });
  const mqttPort = server.server.port('mqtt');
  assert.ok(mqttPort > 0, server.server.line);
  assert.match(server.server.line, new RegExp(`^listening http=\\d+ grpc=\\d+ mqtt=${mqttPort}$`));
  assert.equal(config.broker.url, `mqtt://127.0.0.1:${mqttPort}`);
  assert.equal(config.server.url, server.baseUrl);
  assert.equal(config.serverPublicKey, server.server.ctx.signingKey.publicKey.export({ type: 'spki', format: 'pem' }).toString());

  const client = await connectClient(config.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: config.broker.password });
  await client.endAsync();
  await assert.rejects(connectClient(config.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: 'wrong' }), /Bad username or password/);
  // The device token downloads (GET /api/blobs) but may not read the fleet.
  assert.equal((await server.request('GET', '/api/devices', { token: config.server.token })).status, 403);

  const refusals: [unknown, number, RegExp][] = [
    [{ id: 'osaka-1', labels: {} }, 409, /already enrolled/],
    [{ id: 'bad/id', labels: {} }, 400, /body\.id/],
    [{ id: 'fleetprune-server', labels: {} }, 400, /reserved/],
    [{ id: 'x1', labels: { 'bad key': 'v' } }, 400, /labels/],
    [{ id: 'x2', brokerUrl: 'http://nope' }, 400, /brokerUrl/],
    // No host: mqtt.js would take it as localhost, the device's own.
    [{ id: 'x2a', brokerUrl: 'mqtt://' }, 400, /^body\.brokerUrl: must name the broker's host \(mqtt:\/\/HOST:PORT\)$/],
    [{ id: 'x2b', brokerUrl: 'mqtt:x' }, 400, /^body\.brokerUrl: must name the broker's host/],
    [{ id: 'x2d', brokerUrl: 'not a url' }, 400, /^body\.brokerUrl: must be an mqtt:\/\/ or mqtts:\/\/ URL$/],
    [{ id: 'x3', extra: 1 }, 400, /extra/],
  ];
  for (const [body, status, message] of refusals) {
    const response = await server.request('POST', '/api/devices', { json: body });
    assert.equal(response.status, status, JSON.stringify(body));
    assert.match(((await response.json()) as { error: { message: string } }).error.message, message);
  }
  // Keys that would touch the prototype are refused, naming the key, never silently dropped.
  const reserved: [string, RegExp][] = [
    ['{"id": "x4", "labels": {"__proto__": "x"}}', /^body\.labels\.__proto__: "__proto__" is not allowed as a key$/],
    ['{"id": "x5", "labels": {"site": "osaka", "constructor": "x"}}', /^body\.labels\.constructor: label key "constructor" is reserved$/],
    ['{"id": "x6", "labels": {"prototype": "x"}}', /^body\.labels\.prototype: label key "prototype" is reserved$/],
  ];
  for (const [body, message] of reserved) {
    const response = await server.request('POST', '/api/devices', { body, headers: { 'content-type': 'application/json' } });
    assert.equal(response.status, 400, body);
    assert.match(((await response.json()) as { error: { message: string } }).error.message, message);
  }
  const devicesGrpc = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  t.after(() => devicesGrpc.close());
  // An id taken is ALREADY_EXISTS (REST code already_exists); a state refusal is FAILED_PRECONDITION (REST conflict).
  const taken = await server.request('POST', '/api/devices', { json: { id: 'osaka-1', labels: {} } });
  assert.equal(((await taken.json()) as { error: { code: string } }).error.code, 'already_exists');
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'osaka-1', labels: {} }), (error: any) => error.code === 6 && /^device osaka-1 is already enrolled/.test(error.details));
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'x2c', labels: {}, broker_url: 'mqtt://' }), (error: any) => error.code === 3 && /^broker_url: must name the broker's host/.test(error.details));
  // A broker URL with credentials: they would replace the device's own (it could never log in), and the agent logs the URL.
  const withPassword = await server.request('POST', '/api/devices', { json: { id: 'x2d', labels: {}, brokerUrl: 'mqtts://u:restSECRETpw@broker.example:8883' } });
  assert.equal(withPassword.status, 400);
  assert.match(((await withPassword.json()) as { error: { message: string } }).error.message, /^body\.brokerUrl: must not hold user:password@ /);
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'x2e', labels: {}, broker_url: 'mqtt://u:pw@127.0.0.1:1883' }), (error: any) => error.code === 3 && /^broker_url: must not hold user:password@ /.test(error.details) && !/pw@/.test(error.details));
  for (const id of ['x2a', 'x2b', 'x2c', 'x2d', 'x2e']) assert.equal((await server.request('GET', `/api/devices/${id}`)).status, 404, `${id} not enrolled`);
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'x7', labels: { constructor: 'x' } }), (error: any) => error.code === 3 && /^labels\.constructor: label key "constructor" is reserved$/.test(error.details));
  // protobufjs keeps a __proto__ map key as an own property; schema validation would drop it without a word.
  const protoKeyed = JSON.parse('{"site": "osaka", "__proto__": "x"}') as Record<string, string>;
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'x9', labels: protoKeyed }), (error: any) => error.code === 3 && /^labels\.__proto__: "__proto__" is not allowed as a key$/.test(error.details));
  // A NUL character is refused at every edge (PostgreSQL cannot store one), naming where it is.
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'x10', labels: { site: 'a\u0000b' } }), (error: any) => error.code === 3 && error.details === 'labels.site: contains a NUL character (U+0000)');
  const nulRefusals: [string, string, unknown, string][] = [
    ['POST', '/api/devices', { id: 'x11', labels: { site: 'a\u0000b' } }, 'body.labels.site: contains a NUL character (U+0000)'],
    ['GET', '/api/devices/a%00b', undefined, 'path.id: contains a NUL character (U+0000)'],
    ['GET', '/api/rollouts?model=a%00b', undefined, 'query.model: contains a NUL character (U+0000)'],
  ];
  for (const [method, path, json, message] of nulRefusals) {
    const response = await server.request(method, path, json === undefined ? {} : { json });
    assert.equal(response.status, 400, path);
    assert.equal(((await response.json()) as { error: { message: string } }).error.message, message);
  }
  const cli = await runCli(['devices', 'enroll', '--id', 'x8', '--labels', 'site=osaka,__proto__=x', '--out', '/nonexistent/x8.json', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 2);
  assert.match(cli.stderr, /--labels <k=v,\.\.\.>.*label key "__proto__" is reserved/);
  const viewer = await server.server.ctx.tokens.create('viewer', 'viewer', 'test');
  assert.equal((await server.request('POST', '/api/devices', { token: viewer.token, json: { id: 'v1' } })).status, 403);
  const listed = (await (await server.request('GET', '/api/devices', { token: viewer.token })).json()) as { devices: { id: string; labels: object; online: boolean }[] };
  assert.deepEqual(listed.devices.map((device) => [device.id, device.labels]), [['osaka-1', { site: 'osaka', cohort: 'pilot' }]]);

  assert.equal((await server.request('DELETE', '/api/devices/nobody')).status, 404);
  assert.equal((await server.request('DELETE', '/api/devices/osaka-1')).status, 204);
  assert.equal((await server.request('DELETE', '/api/devices/osaka-1')).status, 409);
  await assert.rejects(connectClient(config.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: config.broker.password }), /Bad username or password/, 'the revoked device is refused');
  assert.equal((await server.request('GET', '/api/models', { token: config.server.token })).status, 401);
  const device = (await (await server.request('GET', '/api/devices/osaka-1')).json()) as { revokedAt: string | null };
  assert.ok(device.revokedAt);
  const actions = (await server.server.ctx.store.audit.list({})).map((entry) => entry.action);
  assert.ok(actions.includes('device.enroll') && actions.includes('device.revoke'), actions.join());
});

test('assignments: bad input is a 4xx and changes nothing; a good one is retained for the selected devices', async (t) => {
  const server = await fleetServer(t);
  const osaka = await enroll(server, 'osaka-1', { site: 'osaka' });
  await enroll(server, 'kyoto-1', { site: 'kyoto' });
  await enroll(server, 'gone-1', { site: 'osaka' });
  assert.equal((await server.request('DELETE', '/api/devices/gone-1')).status, 204);
  const viewer = await server.server.ctx.tokens.create('viewer', 'viewer', 'test');
  const before = await fleetSnapshot(server);
  const good = { model: 'iris', version: '1', role: 'active' };
  const refusals: [unknown, number, RegExp][] = [
    [{ ...good, deviceIds: ['osaka-1', 'nobody'] }, 404, /no device nobody/],
    [{ ...good, deviceIds: ['gone-1'] }, 409, /revoked/],
    [{ ...good, deviceIds: [] }, 400, /at least one/],
    [{ ...good, deviceIds: ['osaka-1', 'osaka-1'] }, 400, /repeat/],
    [{ ...good, selector: { matchLabels: { 'bad key!': 'x' } } }, 400, /selector\.matchLabels/],
    [{ ...good, selector: { matchExpressions: [{ key: 'site', operator: 'In' }] } }, 400, /needs at least one value/],
    [{ ...good, selector: { matchLabels: { site: 'nara' } } }, 404, /no enrolled device matches the selector site=nara/],
    [{ ...good, selector: {}, deviceIds: ['osaka-1'] }, 400, /exactly one of selector, deviceIds and allDevices/],
    [{ ...good, allDevices: true, deviceIds: ['osaka-1'] }, 400, /exactly one of selector, deviceIds and allDevices/],
    [good, 400, /exactly one of selector, deviceIds and allDevices/],
    [{ ...good, selector: {} }, 400, /body\.selector: empty: it would match every device; send "allDevices": true/],
    [{ ...good, selector: { matchLabels: {}, matchExpressions: [] } }, 400, /body\.selector: empty: it would match every device/],
    [{ ...good, selector: { matchLabel: { site: 'x' } } }, 400, /^body\.selector\.matchLabel: unknown field$/],
    [{ ...good, allDevices: false }, 400, /body\.allDevices: must be true/],
    [{ ...good, version: '9', deviceIds: ['osaka-1'] }, 404, /no version iris@9/],
    [{ ...good, model: 'nope', deviceIds: ['osaka-1'] }, 404, /nope/],
    [{ ...good, role: 'shadow', deviceIds: ['osaka-1'] }, 400, /body\.role/],
    [{ model: 'iris', role: 'active', deviceIds: ['osaka-1'] }, 400, /body\.version/],
  ];
  for (const [body, status, message] of refusals) {
    const response = await server.request('POST', '/api/assignments', { json: body });
    assert.equal(response.status, status, JSON.stringify(body));
    assert.match(((await response.json()) as { error: { message: string } }).error.message, message, JSON.stringify(body));
  }
  assert.equal((await server.request('POST', '/api/assignments', { token: viewer.token, json: { ...good, deviceIds: ['osaka-1'] } })).status, 403);

  // gRPC refuses the same way.
  const grpc = grpcClient(server.grpcAddress, 'Assignments', ADMIN_TOKEN);
  t.after(() => grpc.close());
  await assert.rejects(grpc.call('CreateAssignment', { ...good, selector_json: '{"matchLabels":', device_ids: [] }), /selector_json: malformed JSON/);
  await assert.rejects(grpc.call('CreateAssignment', { ...good, device_ids: ['nobody'] }), /no device nobody/);
  // Named by the proto's fields, not the REST body's (selector, deviceIds, allDevices).
  const refusedAs = (details: RegExp) => (error: any) => (assert.equal(error.code, 3, error.details), assert.match(error.details, details), true);
  await assert.rejects(grpc.call('CreateAssignment', { ...good, selector_json: '{}', device_ids: [] }), refusedAs(/^selector_json: empty: it would match every device/));
  await assert.rejects(grpc.call('CreateAssignment', { ...good, selector_json: '{"matchLabels":{"a":1}}', device_ids: [] }), refusedAs(/^selector_json\.matchLabels\.a: /));
  // A misspelt key is refused for that alone: not also as an empty selector (advising the REST body's allDevices).
  await assert.rejects(grpc.call('CreateAssignment', { ...good, selector_json: '{"matchLabel":{"site":"x"}}', device_ids: [] }), refusedAs(/^selector_json\.matchLabel: unknown field$/));
  await assert.rejects(grpc.call('CreateAssignment', { ...good, selector_json: '', device_ids: ['osaka-1'], all_devices: true }), refusedAs(/^give exactly one of selector_json, device_ids and all_devices$/));
  await assert.rejects(grpc.call('CreateAssignment', { ...good, selector_json: '', device_ids: [] }), refusedAs(/^give exactly one of selector_json, device_ids and all_devices$/));
  await assert.rejects(grpc.call('CreateAssignment', { ...good, device_ids: ['osaka-1', 'osaka-1'] }), refusedAs(/^device_ids: must not repeat a device$/));
  assert.equal(await fleetSnapshot(server), before);

  const response = await server.request('POST', '/api/assignments', { json: { ...good, selector: { matchLabels: { site: 'osaka' } } } });
  assert.equal(response.status, 201);
  const result = (await response.json()) as { assignmentId: string; artifactId: string; url: string; devices: { deviceId: string; online: boolean }[] };
  assert.deepEqual(result.devices, [{ deviceId: 'osaka-1', online: false, state: 'published' }]);
  assert.equal(result.url, `${server.baseUrl}/api/artifacts/${result.artifactId}/manifest.json`);

  // The device, connecting later, finds its assignment retained.
  const client = await connectClient(osaka.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: osaka.broker.password });
  t.after(() => client.endAsync(true));
  const received = new Promise<Buffer>((resolve) => client.once('message', (_topic, payload) => resolve(payload)));
  await client.subscribeAsync(assignmentTopic('osaka-1'), { qos: 1 });
  const assignment = AssignmentSchema.parse(JSON.parse((await received).toString()));
  assert.deepEqual([assignment.id, assignment.model, assignment.version, assignment.role, assignment.sha256, assignment.url], [
    result.assignmentId, 'iris', '1', 'active', result.artifactId, result.url,
  ]);
  const devices = (await (await server.request('GET', '/api/devices')).json()) as { devices: { id: string; assignment: { id: string } | null }[] };
  assert.deepEqual(devices.devices.map((device) => [device.id, device.assignment?.id ?? null]), [['gone-1', null], ['kyoto-1', null], ['osaka-1', result.assignmentId]]);
  const audit = await server.server.ctx.store.audit.list({ limit: 1 });
  assert.deepEqual([audit[0]!.action, audit[0]!.target], ['assignment.create', 'model:iris@1']);
});

test('assignments: allDevices assigns every live device (not revoked ones), over REST and gRPC', async (t) => {
  const server = await fleetServer(t);
  const good = { model: 'iris', version: '1', role: 'active' };
  const none = await server.request('POST', '/api/assignments', { json: { ...good, allDevices: true } });
  assert.equal(none.status, 404);
  assert.match(((await none.json()) as { error: { message: string } }).error.message, /no device is enrolled/);
  await enroll(server, 'osaka-1', { site: 'osaka' });
  await enroll(server, 'kyoto-1', { site: 'kyoto' });
  await enroll(server, 'gone-1', { site: 'osaka' });
  assert.equal((await server.request('DELETE', '/api/devices/gone-1')).status, 204);

  const response = await server.request('POST', '/api/assignments', { json: { ...good, allDevices: true } });
  assert.equal(response.status, 201, await response.clone().text());
  const result = (await response.json()) as { assignmentId: string; devices: { deviceId: string }[] };
  assert.deepEqual(result.devices.map((device) => device.deviceId).sort(), ['kyoto-1', 'osaka-1']);

  const grpc = grpcClient(server.grpcAddress, 'Assignments', ADMIN_TOKEN);
  t.after(() => grpc.close());
  const viaGrpc = (await grpc.call('CreateAssignment', { ...good, version: '2', selector_json: '', device_ids: [], all_devices: true })) as { assignment_id: string; devices: { device_id: string }[] };
  assert.deepEqual(viaGrpc.devices.map((device) => device.device_id).sort(), ['kyoto-1', 'osaka-1']);
  const devices = (await (await server.request('GET', '/api/devices')).json()) as { devices: { id: string; assignment: { id: string } | null }[] };
  assert.deepEqual(devices.devices.map((device) => [device.id, device.assignment?.id ?? null]), [['gone-1', null], ['kyoto-1', viaGrpc.assignment_id], ['osaka-1', viaGrpc.assignment_id]]);
});

test('assignments: one replaced before its device answered is superseded (retention can then delete it); an answer that still comes replaces that', async (t) => {
  const server = await fleetServer(t);
  const osaka = await enroll(server, 'osaka-1', { site: 'osaka' });
  await enroll(server, 'kyoto-1', { site: 'kyoto' });
  const assign = async (json: object) => {
    const response = await server.request('POST', '/api/assignments', { json: { model: 'iris', role: 'active', ...json } });
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { assignmentId: string }).assignmentId;
  };
  const first = await assign({ version: '1', deviceIds: ['osaka-1', 'kyoto-1'] });
  const second = await assign({ version: '2', deviceIds: ['osaka-1'] });
  const states = async () => (await server.server.ctx.store.engine.all('SELECT id, device_id, state, reason FROM device_assignments ORDER BY issued_at, id, device_id')).map((row) => [row.id === first ? 'first' : 'second', row.device_id, row.state, row.reason]);
  assert.deepEqual(await states(), [
    ['first', 'kyoto-1', 'published', null],
    ['first', 'osaka-1', 'superseded', `replaced by assignment ${second} before the device answered`],
    ['second', 'osaka-1', 'published', null],
  ]);
  const client = await connectClient(osaka.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: osaka.broker.password });
  t.after(() => client.endAsync(true));
  await client.publishAsync(reportsTopic('osaka-1'), Buffer.from(JSON.stringify({
    schema: 1, id: 'answer-first-1', kind: 'assignment', deviceId: 'osaka-1', createdAt: new Date().toISOString(),
    assignmentId: first, outcome: 'refused', role: 'active', model: 'iris', version: '1', sha256: 'a'.repeat(64), reason: `superseded by ${second}`,
  })), { qos: 1 });
  await waitFor(async () => (await states())[1]![2] === 'refused', 5000, 'the late answer recorded');
});

test('MQTT ingest: answers to assignments never issued and impossible benchmark numbers are dropped and counted; issued answers still count', async (t) => {
  const server = await fleetServer(t);
  const osaka = await enroll(server, 'osaka-1', { site: 'osaka', cohort: 'pilot' });
  const client = await connectClient(osaka.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: osaka.broker.password });
  t.after(() => client.endAsync(true));
  const metrics = async () => (await fetch(`${server.baseUrl}/metrics`)).text();
  const dropped = async (reason: string) => Number(new RegExp(`^fleetprune_fleet_dropped_messages_total\\{kind="reports",reason="${reason}"\\} (\\d+)$`, 'm').exec(await metrics())?.[1] ?? 0);
  const publish = (report: object) => client.publishAsync(reportsTopic('osaka-1'), Buffer.from(JSON.stringify(report)), { qos: 1 });
  const reportBase = { schema: 1, deviceId: 'osaka-1', createdAt: new Date().toISOString() };
  const ghost = { model: 'ghost', version: '9', sha256: 'a'.repeat(64) };

  await publish({ ...reportBase, id: 'answer-ghost-1', kind: 'assignment', assignmentId: 'nonexistent1', outcome: 'activated', role: 'active', ...ghost, reason: null });
  await waitFor(async () => (await dropped('unknown-assignment')) === 1, 5000, 'the unknown answer dropped');
  const bench = { ...ghost, role: 'candidate', score: { accuracy: 1e300, correct: 5, total: 1 }, latencyMs: { p50: 1, p95: 2, p99: 3, samples: 5 }, batchSize: 1, throughputRowsPerSecond: 1, loadTimeMs: 1, rssIncreaseBytes: 0 };
  await publish({ ...reportBase, id: 'bench-huge-1', kind: 'benchmark', assignmentId: null, holdout: { rows: 1, fingerprint: 'f', task: 'classification' }, active: null, candidate: bench });
  await waitFor(async () => (await dropped('invalid-payload')) === 1, 5000, 'the impossible benchmark dropped');

  const shown = (await (await server.request('GET', '/api/devices/osaka-1')).json()) as { active: unknown; candidate: unknown };
  assert.deepEqual([shown.active, shown.candidate], [null, null]);
  assert.deepEqual(await server.server.ctx.store.engine.all('SELECT id FROM device_reports'), []);
  assert.doesNotMatch(await metrics(), /^fleetprune_device_accuracy_ratio\{|e\+300/m);

  // An answer to an assignment the server did issue moves the slot as before.
  const assigned = (await (await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['osaka-1'] } })).json()) as { assignmentId: string; artifactId: string };
  await publish({ ...reportBase, id: 'answer-real-1', kind: 'assignment', assignmentId: assigned.assignmentId, outcome: 'activated', role: 'active', model: 'iris', version: '1', sha256: assigned.artifactId, reason: null });
  await waitFor(async () => ((await (await server.request('GET', '/api/devices/osaka-1')).json()) as { active: { version: string } | null }).active?.version === '1', 5000, 'v1 active');
  assert.equal(await dropped('unknown-assignment'), 1);
});

test('the server deletes device reports older than --report-retention-days while it runs', async (t) => {
  const server = (await startTestServer(t, { config: { reportRetentionDays: 2 }, start: { reportSweepMs: 100 } }))!;
  const reports = new FleetStore(server.server.ctx.store).repos.reports;
  const arrived = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString();
  const report = (id: string) => ({ schema: 1, id, kind: 'assignment', deviceId: 'osaka-1', createdAt: arrived(0), assignmentId: 'assign-0001', outcome: 'installed', role: 'candidate', model: 'iris', version: '2', sha256: 'a'.repeat(64), reason: null }) as const;
  await reports.insert(report('answer-old'), 'pilot', arrived(3));
  await reports.insert(report('answer-new'), 'pilot', arrived(1));
  await waitFor(async () => (await reports.count()) === 1, 5000, 'the sweep');
  assert.deepEqual((await reports.list({})).map((stored) => stored.report.id), ['answer-new']);
});

test('a direct assignment to a device a rollout under way targets is refused (the rollout would overwrite or undo it); after the abort it goes through', async (t) => {
  const server = await fleetServer(t);
  await enroll(server, 'held-1', { site: 'osaka' });
  const [v1] = await server.server.ctx.store.models.listVersions('iris', { limit: 10 }).then((versions) => versions.filter((v) => v.version === '1'));
  await new FleetStore(server.server.ctx.store).repos.devices.setSlots('held-1', { active: { model: 'iris', version: '1', sha256: v1!.artifactId }, candidate: null, previous: null }, new Date().toISOString());
  const started = await server.request('POST', '/api/rollouts', { json: { model: 'iris', candidateVersion: '2', steps: [{ setWeight: 100 }, { pause: {} }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  // The rollout's own assignment is recorded first (the device is offline, so it keeps retrying).
  await waitFor(async () => (await new FleetStore(server.server.ctx.store).repos.devices.get('held-1'))?.retainedAssignment?.version === '2', 5000, 'the rollout assigned the candidate');
  const before = await fleetSnapshot(server);
  const refused = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['held-1'] } });
  assert.equal(refused.status, 409);
  assert.equal(((await refused.json()) as any).error.message, `device held-1 is a target of rollout ${id} of iris (Progressing); finish, abort or roll it back first (it would overwrite or undo this assignment)`);
  assert.equal(await fleetSnapshot(server), before, 'nothing recorded');
  assert.equal((await server.request('POST', `/api/rollouts/${id}/abort`)).status, 200);
  const assigned = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['held-1'] } });
  assert.equal(assigned.status, 201, await assigned.text());
});

test('a candidate of another model than the device serves is refused (nothing to benchmark it against); as active it switches the device', async (t) => {
  const server = await fleetServer(t);
  await enroll(server, 'wine-1', { site: 'osaka' });
  await enroll(server, 'fresh-1', { site: 'osaka' });
  await new FleetStore(server.server.ctx.store).repos.devices.setSlots('wine-1', { active: { model: 'wine', version: '3', sha256: 'c'.repeat(64) }, candidate: null, previous: null }, new Date().toISOString());
  const before = await fleetSnapshot(server);
  const refused = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '2', role: 'candidate', selector: { matchLabels: { site: 'osaka' } } } });
  assert.equal(refused.status, 409);
  assert.equal(((await refused.json()) as any).error.message, 'device wine-1 serves wine, not iris: a candidate is benchmarked against the active model it would replace; assign iris with role active to switch the device to it');
  assert.equal(await fleetSnapshot(server), before, 'nothing recorded');
  // A device with no model yet may take a candidate (it is installed, and scored alone).
  assert.equal((await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '2', role: 'candidate', deviceIds: ['fresh-1'] } })).status, 201);
  const switched = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['wine-1'] } });
  assert.equal(switched.status, 201, await switched.clone().text());
  // wine-1 is offline: its switch to iris is not taken yet. An iris candidate waits for it, saying so.
  const switchId = ((await switched.json()) as { assignmentId: string }).assignmentId;
  const early = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '2', role: 'candidate', deviceIds: ['wine-1'] } });
  assert.equal(early.status, 409);
  assert.equal(
    ((await early.json()) as any).error.message,
    `device wine-1 serves wine, not iris: a candidate is benchmarked against the active model it would replace; its switch to iris@1 (assignment ${switchId}) is not taken yet: assign the candidate once the device runs iris`,
  );
  // A wine candidate would replace the untaken switch unseen: it goes through, with a warning.
  const wine = await makeArtifact(t, { seed: 7, name: 'wine', privateKey: server.server.ctx.signingKey.privateKey, version: '1' });
  assert.equal((await pushArtifact(server, 'wine', wine.dir, wine.manifest)).status, 201);
  const replacing = await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'candidate', deviceIds: ['wine-1'] } });
  assert.equal(replacing.status, 201, await replacing.clone().text());
  assert.deepEqual(((await replacing.json()) as { warnings: string[] }).warnings, [`this replaces device wine-1's active assignment of iris@1 (assignment ${switchId}), which it has not taken yet: it stays on wine@3`]);
  // A new device's first active model, not received yet, replaced by a candidate: it would start with no model at all.
  const first = (await (await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['fresh-1'] } })).json()) as { assignmentId: string };
  const candidate = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '2', role: 'candidate', deviceIds: ['fresh-1'] } });
  assert.deepEqual(((await candidate.json()) as { warnings: string[] }).warnings, [`this replaces device fresh-1's active assignment of iris@1 (assignment ${first.assignmentId}), which it has not taken yet: it stays on no model`]);
});

test('devices are listed a page at a time (REST and gRPC) with fleet-wide counts; the CLI walks every page', async (t) => {
  const server = (await startTestServer(t))!;
  const ids = ['dev-a', 'dev-b', 'dev-c', 'dev-d', 'dev-e'];
  for (const id of ids) await enroll(server, id, {});
  assert.equal((await server.request('DELETE', '/api/devices/dev-e')).status, 204);

  const pages: string[][] = [];
  let after: string | null = null;
  let counts: unknown;
  do {
    const query: string = after ? `?limit=2&after=${after}` : '?limit=2';
    const page = (await (await server.request('GET', `/api/devices${query}`)).json()) as { devices: { id: string }[]; next: string | null; counts: unknown };
    pages.push(page.devices.map((device) => device.id));
    after = page.next;
    counts = page.counts;
  } while (after);
  assert.deepEqual(pages, [['dev-a', 'dev-b'], ['dev-c', 'dev-d'], ['dev-e']], 'by id, revoked devices included');
  assert.deepEqual(counts, { enrolled: 4, online: 0, revoked: 1 }, 'enrolled and online count live devices, revoked the rest of the list, over the whole fleet');
  const everything = (await (await server.request('GET', '/api/devices')).json()) as { devices: unknown[]; next: string | null };
  assert.deepEqual([everything.devices.length, everything.next], [5, null], 'the default page (1000) holds a small fleet');
  for (const [query, message] of [['?limit=0', /^query\.limit: /], ['?limit=5001', /^query\.limit: /], ['?after=bad%2Fid', /^query\.after: /], ['?page=2', /page/]] as const) {
    const refused = await server.request('GET', `/api/devices${query}`);
    assert.equal(refused.status, 400, query);
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, message, query);
  }

  const devices = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  t.after(() => devices.close());
  const first = await devices.call('ListDevices', { limit: 3 });
  assert.deepEqual([first.devices.map((device: { id: string }) => device.id), first.next], [['dev-a', 'dev-b', 'dev-c'], 'dev-c']);
  const rest = await devices.call('ListDevices', { limit: 3, after: first.next });
  assert.deepEqual([rest.devices.map((device: { id: string }) => device.id), rest.next], [['dev-d', 'dev-e'], '']);
  await assert.rejects(devices.call('ListDevices', { limit: 9999 }), (error: { code: number; details: string }) => error.code === 3 && error.details === 'limit: must be a whole number from 1 to 5000, or 0 (unset) for 1000');

  const listed = await runCli(['devices', 'list', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(listed.stdout.trim().split('\n').slice(1).map((line) => line.split(/\s+/)[0]), ids);
});

for (const engine of STORE_ENGINES) {
  test(`enrolling one id several times at once (${engine}): one is enrolled, the others are 409, none is a server error`, async (t) => {
    const server = await startTestServer(t, { engine });
    if (!server) return;
    const answers = await Promise.all(Array.from({ length: 6 }, () => server.request('POST', '/api/devices', { json: { id: 'same-1', labels: {} } })));
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [201, 409, 409, 409, 409, 409]);
    for (const answer of answers.filter((a) => a.status === 409)) assert.match(((await answer.json()) as any).error.message, /^device same-1 is already enrolled/);
    const tokens = await server.server.ctx.store.engine.all("SELECT id FROM tokens WHERE role = 'device'");
    assert.equal(tokens.length, 1, 'the refused enrollments left no token behind');
  });
}

test("a device's token downloads only the artifacts assigned to that device (REST manifest and blobs, gRPC DownloadBlob); other tokens any", async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifacts = [];
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: signer.privateKey, version });
    assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
    artifacts.push({ id: artifactId(artifact.manifest), onnx: artifact.manifest.files['model.onnx']!.sha256, weights: artifact.manifest.files['tfjs/weights.bin']!.sha256 });
  }
  const [one, two] = artifacts as [(typeof artifacts)[0], (typeof artifacts)[0]];
  const osaka = await enroll(server, 'osaka-1', {});
  const kyoto = await enroll(server, 'kyoto-1', {});
  assert.equal((await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['osaka-1'] } })).status, 201);

  const status = async (token: string, path: string, headers: Record<string, string> = {}) => {
    const response = await server.request('GET', path, { token, headers });
    await response.arrayBuffer();
    return response.status;
  };
  const manifest = (id: string) => `/api/artifacts/${id}/manifest.json`;
  const blob = (sha: string) => `/api/blobs/${sha}`;
  // The assigned artifact: its manifest and every file it lists, whole or a range.
  assert.equal(await status(osaka.server.token, manifest(one.id)), 200);
  assert.equal(await status(osaka.server.token, blob(one.onnx)), 200);
  assert.equal(await status(osaka.server.token, blob(one.weights), { range: 'bytes=10-' }), 206);
  // Not assigned to it: 403 naming the device, for the manifest and for a file, though both exist.
  const refused = await server.request('GET', manifest(two.id), { token: osaka.server.token });
  assert.equal(refused.status, 403);
  assert.match(((await refused.json()) as any).error.message, new RegExp(`^device osaka-1 may download only the artifacts assigned to it, and artifact ${two.id} never was$`));
  const refusedFile = await server.request('GET', blob(two.onnx), { token: osaka.server.token });
  assert.equal(refusedFile.status, 403);
  assert.match(((await refusedFile.json()) as any).error.message, /^device osaka-1 may download only the files of artifacts assigned to it/);
  assert.equal(await status(osaka.server.token, blob(two.weights), { range: 'bytes=10-' }), 403);
  // Another device's token: nothing of osaka's assignment.
  assert.equal(await status(kyoto.server.token, manifest(one.id)), 403);
  assert.equal(await status(kyoto.server.token, blob(one.onnx)), 403);
  // The artifact id is not a file: naming it as a blob opens nothing either.
  assert.equal(await status(osaka.server.token, blob(one.id)), 403);

  // gRPC DownloadBlob, the same scope.
  const osakaGrpc = grpcClient(server.grpcAddress, 'Blobs', osaka.server.token);
  t.after(() => osakaGrpc.close());
  const chunks = await osakaGrpc.stream('DownloadBlob', { sha256: one.onnx, offset: '0', chunk_size: 0 });
  assert.ok(chunks.length > 0);
  await assert.rejects(osakaGrpc.stream('DownloadBlob', { sha256: two.onnx, offset: '0', chunk_size: 0 }), (error: any) => {
    assert.equal(error.code, 7); // PERMISSION_DENIED
    assert.match(error.details, /^device osaka-1 may download only the files of artifacts assigned to it/);
    return true;
  });

  // Assigned later (here as a candidate): then it downloads that one too.
  assert.equal((await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '2', role: 'candidate', deviceIds: ['osaka-1'] } })).status, 201);
  assert.equal(await status(osaka.server.token, manifest(two.id)), 200);
  assert.equal(await status(osaka.server.token, blob(two.onnx)), 200);
  assert.equal(await status(kyoto.server.token, blob(two.onnx)), 403);

  // A device-role token an admin made (a mirror's) is no device's: it downloads any artifact, as a viewer's does.
  const loose = (await (await server.request('POST', '/api/tokens', { json: { role: 'device', label: 'mirror' } })).json()) as { token: string };
  const viewer = (await (await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).json()) as { token: string };
  for (const token of [loose.token, viewer.token]) {
    for (const { id, onnx } of [one, two]) {
      assert.equal(await status(token, manifest(id)), 200);
      assert.equal(await status(token, blob(onnx)), 200);
    }
  }
});

test('assigning a version a rollout failed or rolled back goes through with a warning (REST, gRPC and the CLI say it); another version, none', async (t) => {
  const server = await fleetServer(t);
  await enroll(server, 'osaka-1', {});
  await recordFailedVersion(server.server.ctx.store.engine, 'iris', '2');
  const warning = 'iris@2 is failed since 2026-03-01T09:00:00.000Z (analysis failed at step 2: accuracy below 0.8); this assignment ships it again';
  const rest = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: 'latest', role: 'candidate', deviceIds: ['osaka-1'] } });
  assert.equal(rest.status, 201);
  const body = (await rest.json()) as { version: string; warnings: string[] };
  assert.deepEqual([body.version, body.warnings], ['2', [warning]]);
  const fine = (await (await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['osaka-1'] } })).json()) as { assignmentId: string; warnings: string[] };
  assert.deepEqual(fine.warnings, []);
  // osaka-1 is offline: the candidate below replaces that active assignment before it is taken, and says so too.
  const replacedWarning = `this replaces device osaka-1's active assignment of iris@1 (assignment ${fine.assignmentId}), which it has not taken yet: it stays on no model`;

  const grpc = grpcClient(server.grpcAddress, 'Assignments', ADMIN_TOKEN);
  t.after(() => grpc.close());
  const overGrpc = await grpc.call('CreateAssignment', { model: 'iris', version: '2', role: 'candidate', selector_json: '', device_ids: ['osaka-1'], all_devices: false });
  assert.deepEqual(overGrpc.warnings, [warning, replacedWarning]);
  const cli = await runCli(['assign', '--model', 'iris', '--version', '2', '--role', 'candidate', '--device', 'osaka-1', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(cli.stderr, `warning: ${warning}\n`);
  assert.match(cli.stdout, /^assignment \S+: iris@2 as candidate to 1 device\(s\)\n/);
});

test('fleetprune assign: --device repeated adds to the devices (as the comma-separated list does), instead of keeping only the last', async (t) => {
  const server = await fleetServer(t);
  for (const id of ['osaka-1', 'osaka-2', 'osaka-3']) await enroll(server, id, {});
  const cli = await runCli(['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--device', 'osaka-1', '--device', 'osaka-2,osaka-3', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^assignment \S+: iris@1 as active to 3 device\(s\)\n/);
  assert.deepEqual([...cli.stdout.matchAll(/^ {2}(\S+)\t/gm)].map((match) => match[1]).sort(), ['osaka-1', 'osaka-2', 'osaka-3']);
  const twice = await runCli(['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--device', 'osaka-1', '--device', 'osaka-1', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.notEqual(twice.code, 0);
  assert.ok(isOneLineError(twice.stderr), twice.stderr);
  assert.match(twice.stderr, /must not repeat a device/);
});
