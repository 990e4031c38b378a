import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { startServer } from '../../server/app/start-server.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { assignmentTopic, statusTopic } from '../../shared/protocol/topics.ts';
import { createLogger } from '../../shared/util/log.ts';
import { UserError } from '../../shared/util/errors.ts';
import { engineMissing, freePort } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';
import { until } from '../helpers/until.ts';
import { runCli } from '../helpers/cli.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { ADMIN_TOKEN, closeOnce, testServerOf, type TestServer } from '../server/helpers/test-server.ts';

interface Running extends TestServer {
  brokerActive(): Promise<number>;
  brokerConnected(): Promise<number>;
  /** fleetprune_rollout_leader and fleetprune_rollout_takeovers_total, as `leader/takeovers`. */
  driving(): Promise<string>;
}

/**
 * Two servers share one PostgreSQL schema, one data directory and one real Mosquitto. A broker identity allows one
 * connection (client ids are pinned to usernames), so only the rollout leader connects; the
 * standby serves reads, refuses fleet changes with the leader's name, and takes the broker side
 * over when the leader goes.
 */
test('external broker + PostgreSQL: only the leader connects; the standby refuses fleet changes, then takes over', async (t: TestContext) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-standby-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const location = await freshStoreLocation(t, 'postgres', join(root, 'shared'));
  if (!location || location.engine !== 'postgres') return;

  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, root);
  t.after(() => mosquitto.stop());
  const signer = await makeSigner(t);

  const start = async (name: string): Promise<Running> => {
    const config = parseServerConfig({
      // As documented for a standby: one data directory (blobs, signing key), one node id each.
      dataDir: join(root, 'shared'),
      nodeId: `node-${name}`,
      host: '127.0.0.1',
      httpPort: 0,
      grpcPort: 0,
      adminToken: ADMIN_TOKEN,
      databaseUrl: location.databaseUrl,
      databaseSchema: location.schema,
      mqttUrl: mosquitto.url,
      mqttPassword: password,
      mosquittoDir: mosquitto.authDir,
      mosquittoPidFile: pidFile,
      trustedKeys: [signer.publicKeyPath],
    });
    const server = await startServer(config, { log: createLogger(`standby-test-${name}`, 'silent'), leaderPollMs: 200 });
    closeOnce(server);
    t.after(() => server.close());
    const base = testServerOf(server, config.dataDir);
    return {
      ...base,
      brokerActive: async () => Number(/^fleetprune_fleet_broker_active (\d)/m.exec(await (await fetch(`${base.baseUrl}/metrics`)).text())?.[1]),
      brokerConnected: async () => Number(/^fleetprune_fleet_broker_connected (\d)/m.exec(await (await fetch(`${base.baseUrl}/metrics`)).text())?.[1]),
      driving: async () => {
        const text = await (await fetch(`${base.baseUrl}/metrics`)).text();
        return `${/^fleetprune_rollout_leader (\d+)$/m.exec(text)?.[1]}/${/^fleetprune_rollout_takeovers_total (\d+)$/m.exec(text)?.[1]}`;
      },
    };
  };

  const a = await start('a');
  const b = await start('b');
  assert.equal(await a.brokerActive(), 1, 'the leader holds the broker connection');
  assert.equal(await b.brokerActive(), 0, 'the standby does not connect');
  assert.deepEqual([await a.driving(), await b.driving()], ['1/1', '0/0'], 'the leader drives the rollouts, taken over once; the standby never took them');
  const leader = (await (await b.request('GET', '/api/rollouts/leader')).json()) as { leader: string; isLeader: boolean };
  assert.equal(leader.isLeader, false);

  // The standby refuses fleet changes before writing anything, naming the leader; reads work.
  const refused = await b.request('POST', '/api/devices', { json: { id: 'press-1', labels: { site: 'osaka' } } });
  assert.equal(refused.status, 503);
  assert.match(((await refused.json()) as any).error.message, new RegExp(`is a standby: .*send fleet changes to the leader, .*instance ${leader.leader};`));
  const standbyList = (await (await b.request('GET', '/api/devices')).json()) as any;
  assert.deepEqual([standbyList.devices, standbyList.broker], [[], { connected: null }], 'a standby does not know the broker\'s state');
  assert.deepEqual(((await (await a.request('GET', '/api/devices')).json()) as any).broker, { connected: true });

  const enrolled = await a.request('POST', '/api/devices', { json: { id: 'press-1', labels: { site: 'osaka' } } });
  assert.equal(enrolled.status, 201, await enrolled.clone().text());
  const agentConfig = (await enrolled.json()) as { broker: { username: string; password: string } };
  const artifact = await makeArtifact(t, { seed: 3, privateKey: signer.privateKey });
  assert.equal((await pushArtifact(a, 'iris', artifact.dir, artifact.manifest)).status, 201);

  // A device on the real broker: it hears the leader's assignment, and its status reaches the store.
  const messages: { topic: string; id: string }[] = [];
  const device: MqttClient = await mqtt.connectAsync(mosquitto.url, { clientId: 'press-1', username: agentConfig.broker.username, password: agentConfig.broker.password, reconnectPeriod: 200 });
  t.after(() => device.endAsync(true));
  device.on('message', (topic, payload) => messages.push({ topic, id: JSON.parse(payload.toString()).id }));
  await device.subscribeAsync(assignmentTopic('press-1'), { qos: 1 });
  const first = (await (await a.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['press-1'] } })).json()) as { assignmentId: string };
  await until('the leader\'s assignment at the device', async () => (messages.some((m) => m.id === first.assignmentId) ? true : undefined), 5000);
  await device.publishAsync(statusTopic('press-1'), JSON.stringify({ schema: 1, deviceId: 'press-1', online: true, since: new Date().toISOString() }), { qos: 1, retain: true });
  const deviceOnline = async (server: TestServer) => ((await (await server.request('GET', '/api/devices')).json()) as { devices: { online: boolean }[] }).devices[0]?.online;
  await until('the device online', async () => ((await deviceOnline(b)) ? true : undefined), 5000);
  assert.equal(await a.brokerActive(), 1, 'the standby never took the leader\'s connection');

  // The leader loses its database connection (a partition): it is deposed and lets the broker go;
  // whichever server wins the next election holds it, never both.
  const leaderInfo = async (server: TestServer) => (await (await server.request('GET', '/api/rollouts/leader')).json()) as { isLeader: boolean; leaderSince: string | null; instance: string };
  const { leaderSince: electedBefore, instance } = await leaderInfo(a);
  const admin = new pg.Client({ connectionString: location.databaseUrl });
  await admin.connect();
  // This leader's connection only: other test files may run leaders in the same database at the same time.
  const { rowCount } = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`fleetprune-rollout-leader ${instance}`]);
  await admin.end();
  assert.equal(rowCount, 1, 'one leader connection');
  const winner = await until('a new election', async () => {
    const [la, lb] = [await leaderInfo(a), await leaderInfo(b)];
    if (lb.isLeader) return 'b';
    return la.isLeader && la.leaderSince !== electedBefore ? 'a' : undefined;
  }, 10_000);
  const expected = winner === 'a' ? '1,0' : '0,1';
  const states = async () => [await a.brokerActive(), await b.brokerActive()].join(',');
  await until(`the new leader (${winner}) alone to hold the broker`, async () => ((await states()) === expected ? true : undefined), 10_000);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(await states(), expected, 'exactly one server holds the broker');
  // The new election shows on the winner: it drives, and counts one more takeover.
  const drivingAfter = winner === 'a' ? '1/2,0/0' : '0/1,1/1';
  await until(`the winner (${winner}) to drive the rollouts, one more takeover counted`, async () => ([await a.driving(), await b.driving()].join(',') === drivingAfter ? true : undefined), 10_000);

  // The leader goes; the standby is elected, connects, and drives the fleet.
  await a.server.close();
  const tookOverAt = Date.now();
  // Holding the broker side (broker_active) from its election on; connected once its takeover is done.
  await until('the standby to take the broker side', async () => ((await b.brokerActive()) === 1 && (await b.brokerConnected()) === 1 ? true : undefined), 10_000);
  assert.ok(Date.now() - tookOverAt < 10_000);
  await until('the standby to drive the rollouts: a failover to it, counted', async () => (/^1\/[12]$/.test(await b.driving()) ? true : undefined), 10_000);
  const second = await b.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'candidate', deviceIds: ['press-1'] } });
  assert.equal(second.status, 201, await second.clone().text());
  const { assignmentId } = (await second.json()) as { assignmentId: string };
  await until('the new leader\'s assignment at the device', async () => (messages.some((m) => m.id === assignmentId) ? true : undefined), 5000);
  const another = await b.request('POST', '/api/devices', { json: { id: 'press-2', labels: {} } });
  assert.equal(another.status, 201, 'the new leader enrolls');
  // The artifact pushed through the first server is served by the second from the shared data directory.
  const onnx = artifact.manifest.files['model.onnx']!;
  const download = await b.request('GET', `/api/blobs/${onnx.sha256}`);
  assert.equal(download.status, 200);
  assert.equal((await download.arrayBuffer()).byteLength, onnx.bytes);
});

test('external broker + PostgreSQL: a leader whose broker is down still starts, serves reads, and refuses fleet changes until it connects', async (t: TestContext) => {
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-broker-down-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const location = await freshStoreLocation(t, 'postgres', join(root, 'data'));
  if (!location || location.engine !== 'postgres') return;
  const closedPort = await freePort(); // nothing listens there
  const config = parseServerConfig({
    dataDir: join(root, 'data'), host: '127.0.0.1', httpPort: 0, grpcPort: 0, adminToken: ADMIN_TOKEN,
    databaseUrl: location.databaseUrl, databaseSchema: location.schema, mqttUrl: `mqtt://127.0.0.1:${closedPort}`, mqttPassword: 'server-password',
  });
  const started = Date.now();
  const { logger, lines } = recordingLogger();
  const server = await startServer(config, { log: logger, leaderPollMs: 200 });
  t.after(() => server.close());
  assert.ok(Date.now() - started < 25_000, 'start-up went on without the broker');
  const request = (method: string, path: string, json?: unknown) =>
    fetch(`http://127.0.0.1:${server.port('http')}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(json ? { 'content-type': 'application/json' } : {}) }, ...(json ? { body: JSON.stringify(json) } : {}) });
  assert.equal(((await (await request('GET', '/api/rollouts/leader')).json()) as { isLeader: boolean }).isLeader, true);
  assert.deepEqual(((await (await request('GET', '/api/devices')).json()) as { devices: unknown[] }).devices, []);
  const refused = await request('POST', '/api/devices', { id: 'press-1', labels: { site: 'osaka' } });
  assert.equal(refused.status, 503);
  const { error } = (await refused.json()) as { error: { code: string; message: string } };
  assert.match(error.message, /leads but is not connected to the external broker yet; retry shortly$/);
  assert.equal(error.code, 'retry_later');
  assert.equal(refused.headers.get('retry-after'), '2', 'a 503 that may pass shortly says when to try again');
  // The CLI exits 5 on it, as on a server it cannot reach: a script may wait and retry, nothing was done.
  const enrolled = await runCli(['devices', 'enroll', '--id', 'press-1', '--labels', 'site=osaka', '--out', join(root, 'press-1.json'), '--server', `127.0.0.1:${server.port('grpc')}`, '--token', ADMIN_TOKEN]);
  assert.equal(enrolled.code, 5, enrolled.stderr);
  assert.match(enrolled.stderr, /^fleetprune: this server \(.+\) leads but is not connected to the external broker yet; retry shortly\n$/);

  // Deposed while its takeover waits for the broker (its leader connection cut): the takeover gives up
  // because of it, said on one line; it was logged as a failed takeover, at error level, with its stack.
  const { instance } = (await (await request('GET', '/api/rollouts/leader')).json()) as { instance: string };
  const cutAt = lines.length;
  const admin = new pg.Client({ connectionString: location.databaseUrl });
  await admin.connect();
  const { rowCount } = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`fleetprune-rollout-leader ${instance}`]);
  await admin.end();
  assert.equal(rowCount, 1, 'one leader connection');
  await until('the takeover given up', async () => (lines.slice(cutAt).some((line) => line.msg === 'the takeover of rollouts was given up: no longer the rollout leader') ? true : undefined), 20_000);
  const afterCut = lines.slice(cutAt);
  assert.equal(afterCut.find((line) => line.msg === 'the takeover of rollouts was given up: no longer the rollout leader')?.level, 30);
  assert.deepEqual(afterCut.filter((line) => /taking over rollouts failed/.test(String(line.msg)) || JSON.stringify(line).includes('"stack"')), [], 'no failed takeover, no stack');
  await until('leading again', async () => (((await (await request('GET', '/api/rollouts/leader')).json()) as { isLeader: boolean }).isLeader ? true : undefined), 10_000);

  // Stopping gives the takeover up at once, rather than the stop waiting out its bound for it; that is no failure to log.
  const before = lines.length;
  await server.close();
  const said = lines.slice(before).map((line) => `${line.level} ${line.msg}`);
  assert.ok(said.includes('30 the takeover of rollouts was given up: the server is stopping'), said.join('\n'));
  assert.deepEqual(said.filter((line) => line.startsWith('50 ')), [], 'no error logged while stopping');
});

/**
 * One SQLite server on an external Mosquitto that is down when the server (re)starts, with a
 * stale pid file as a crashed Mosquitto leaves: the server starts anyway and serves reads, refuses
 * fleet changes saying why, takes rollout commands (their device commands wait for the broker;
 * test/rollout-api/broker-down-rollback.test.ts), and takes the broker side over once it is back.
 */
test('external broker + SQLite: a restart while the broker is down serves reads and takes the broker over once it is back', async (t: TestContext) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-broker-down-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, root);
  t.after(() => mosquitto.stop());
  // Crashed: its pid file names a process that is gone, and its files stay. (Removing them too let the
  // restart below race the server's rewrite: mosquitto started between the ACL and the password file.)
  await mosquitto.stop({ keepFiles: true });
  const config = parseServerConfig({
    dataDir: join(root, 'server'),
    host: '127.0.0.1',
    httpPort: 0,
    grpcPort: 0,
    adminToken: ADMIN_TOKEN,
    mqttUrl: mosquitto.url,
    mqttPassword: password,
    mosquittoDir: mosquitto.authDir,
    mosquittoPidFile: pidFile,
  });
  const server = await startServer(config, { log: createLogger('broker-down-test', 'silent'), leaderStartWaitMs: 300 });
  t.after(() => server.close());
  const baseUrl = `http://127.0.0.1:${server.port('http')}`;
  const request = (method: string, path: string, json?: unknown) =>
    fetch(`${baseUrl}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) }, body: json === undefined ? undefined : JSON.stringify(json) });

  assert.equal((await request('GET', '/api/devices')).status, 200, 'reads are served');
  const enroll = await request('POST', '/api/devices', { id: 'press-1', labels: { site: 'osaka' } });
  assert.equal(enroll.status, 503);
  assert.match(((await enroll.json()) as any).error.message, /leads but is not connected to the external broker yet; retry shortly/);
  // Rollouts are driven meanwhile (their device commands wait for the broker): this start is
  // answered for what it asks (a version the registry does not hold), not refused for the broker.
  const rollout = await request('POST', '/api/rollouts', { apiVersion: 'fleetprune/v1', kind: 'Rollout', model: 'iris', candidateVersion: '2', steps: [{ setWeight: 100 }] });
  assert.equal(rollout.status, 400);
  assert.match(((await rollout.json()) as any).error.message, /no version iris@2 in the registry/);

  await mosquitto.start();
  await writeFile(pidFile, `${mosquitto.pid}\n`);
  await until('the broker taken over', async () => ((await request('POST', '/api/devices', { id: 'press-1', labels: { site: 'osaka' } })).status === 201 ? true : undefined), 30_000);
  assert.equal(((await (await request('GET', '/api/rollouts/leader')).json()) as any).isLeader, true);
});

test('external broker + SQLite: a broker that refuses FLEETPRUNE_MQTT_PASSWORD fails the start at once, on one line', async (t: TestContext) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-broker-refuses-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const { mosquitto } = await MosquittoProcess.startForServer(binary, root);
  t.after(() => mosquitto.stop());
  const config = parseServerConfig({ dataDir: join(root, 'server'), host: '127.0.0.1', httpPort: 0, grpcPort: 0, adminToken: ADMIN_TOKEN, mqttUrl: mosquitto.url, mqttPassword: 'not-the-password' });
  const started = Date.now();
  await assert.rejects(
    startServer(config, { log: createLogger('broker-refuses-test', 'silent') }),
    (error: unknown) => error instanceof UserError && /^--mqtt-url: cannot connect to the MQTT broker at mqtt:\/\/127\.0\.0\.1:\d+: Connection refused: (Not authorized|Bad username or password) \(the broker refused the server identity fleetprune-server: FLEETPRUNE_MQTT_PASSWORD must be its password in the broker's password file, or give --mosquitto-dir to have the server write that file\)$/.test(error.message),
  );
  assert.ok(Date.now() - started < 10_000, `failed after ${Date.now() - started} ms, not after the start wait`);
});
