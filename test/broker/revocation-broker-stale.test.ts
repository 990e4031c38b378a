import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { credentials, Metadata, type Client } from '@grpc/grpc-js';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { AgentConfigSchema, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../server/helpers/test-server.ts';

async function metric(server: TestServer, name: string): Promise<number | undefined> {
  const match = new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`${server.baseUrl}/metrics`)).text());
  return match ? Number(match[1]) : undefined;
}

async function enroll(server: TestServer, id: string): Promise<AgentConfig> {
  const response = await server.request('POST', '/api/devices', { json: { id, labels: {} } });
  assert.equal(response.status, 201, await response.clone().text());
  return AgentConfigSchema.parse(await response.json());
}

test('external Mosquitto whose auth files cannot be rewritten: a revocation stands but says the broker was not updated (REST 202, gRPC broker_warning, CLI exit 3), so does an enrollment (REST 201 with the config and warning headers, gRPC broker_warning, CLI exit 3 with the config written), the metric shows it, and the server retries until the revoked device is cut off and the enrolled ones can connect', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-stale-auth-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  // The server writes Mosquitto's files through a symbolic link to Mosquitto's directory, which
  // the test later replaces with a plain file: every rewrite then fails (as root too), while the
  // files Mosquitto reads stay as they were. (Turning the ACL file itself into a directory instead
  // makes Mosquitto 2.0.11 spin for ever in its next reload, which the trailing reload can be.)
  const serverAuthDir = join(dir, 'server-auth');
  await symlink(mosquitto.authDir, serverAuthDir);
  const server = (await startTestServer(t, { config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: serverAuthDir, mosquittoPidFile: pidFile } }))!;
  await waitFor(async () => (await metric(server, 'fleetprune_fleet_broker_connected')) === 1, 15_000, 'the server to hold the broker, connected');
  assert.equal(await metric(server, 'fleetprune_fleet_broker_credentials_stale'), 0);
  const configs = { a: await enroll(server, 'dev-a'), b: await enroll(server, 'dev-b'), c: await enroll(server, 'dev-c'), d: await enroll(server, 'dev-d') };
  let device: Awaited<ReturnType<typeof connectClient>> | undefined;
  await waitFor(async () => Boolean((device = await connectClient(mosquitto.url, { clientId: 'dev-a', username: 'dev-a', password: configs.a.broker.password }).catch(() => undefined))), 10_000, 'dev-a connected');
  t.after(() => device!.endAsync(true));
  let closed = false;
  device!.on('close', () => (closed = true));

  // The server's directory becomes a plain file: every rewrite fails, Mosquitto keeps its files.
  // Both swaps are one rename: the server creates its directory when it is missing, so between a
  // removal and a new link its background retry could write into a fresh directory of its own.
  await writeFile(join(dir, 'plain-file'), 'not a directory\n');
  await rename(join(dir, 'plain-file'), serverAuthDir);

  const revoked = await server.request('DELETE', '/api/devices/dev-a');
  assert.equal(revoked.status, 202);
  const body = (await revoked.json()) as { deviceId: string; revoked: boolean; brokerUpdated: boolean; brokerProblem: string; retrying: boolean; warning: string };
  assert.deepEqual([body.deviceId, body.revoked, body.brokerUpdated, body.retrying], ['dev-a', true, false, true]);
  assert.match(body.brokerProblem, /^cannot write Mosquitto's password and ACL files into .*server-auth \(EEXIST/);
  assert.match(body.warning, /^device dev-a is revoked and its download token no longer works, but the broker could not be updated \(cannot write .*\): the device may stay connected to it until it is; the server keeps retrying$/);
  assert.equal((await server.request('GET', '/api/models', { token: configs.a.server.token })).status, 401, 'the download token is revoked at once');
  assert.ok((await (await server.request('GET', '/api/devices/dev-a')).json() as { revokedAt: string | null }).revokedAt, 'the revocation is stored');
  assert.equal(await metric(server, 'fleetprune_fleet_broker_credentials_stale'), 1);
  assert.equal(closed, false, 'the device is still connected: what the answer says');

  // gRPC: the same answer in RevokeDeviceResponse.broker_warning.
  const devices = new (loadFleetpruneProto().Devices)(server.grpcAddress, credentials.createInsecure()) as Client & Record<string, Function>;
  t.after(() => devices.close());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  const warning = await new Promise<string | undefined>((resolve, reject) => {
    devices.RevokeDevice!.call(devices, { id: 'dev-b' }, metadata, (error: Error | null, response: { broker_warning: string }) => (error ? reject(error) : resolve(response.broker_warning)));
  });
  assert.match(warning ?? '', /^device dev-b is revoked and its download token no longer works, but the broker could not be updated \(cannot write .*EEXIST.*\): the device may stay connected to it until it is; the server keeps retrying$/);

  const cli = await runCli(['devices', 'revoke', 'dev-c', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 3, cli.stderr);
  assert.equal(cli.stdout, 'revoked dev-c\n');
  assert.match(cli.stderr, /^fleetprune: warning: device dev-c is revoked and its download token no longer works, but the broker could not be updated \(cannot write Mosquitto's password and ACL files into .* \(EEXIST.*\): the device may stay connected to it until it is; the server keeps retrying\n$/);

  // An enrollment stands too (its config is the only copy of the device's secrets) but says the
  // device cannot connect yet. REST: the body stays exactly the agent config file; the headers say it.
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-e', labels: { site: 'osaka' } } });
  assert.equal(enrolled.status, 201);
  const configE = AgentConfigSchema.parse(await enrolled.json());
  assert.equal(configE.deviceId, 'dev-e');
  assert.equal(enrolled.headers.get('fleetprune-broker-updated'), 'false');
  assert.match(enrolled.headers.get('fleetprune-broker-problem') ?? '', /^cannot write Mosquitto's password and ACL files into .*server-auth \(EEXIST/);
  assert.match(enrolled.headers.get('fleetprune-warning') ?? '', /^device dev-e is enrolled, but the broker could not be updated \(cannot write .*EEXIST.*\): it cannot connect until it is; the server keeps retrying$/);
  await assert.rejects(connectClient(mosquitto.url, { clientId: 'dev-e', username: 'dev-e', password: configE.broker.password }), /Bad username or password|Not authorized/i, 'what the answer says: Mosquitto does not know dev-e yet');
  assert.equal((await server.request('GET', '/api/devices/dev-e')).status, 200, 'the enrollment is stored');

  // gRPC: EnrollDeviceResponse.broker_warning, next to the config.
  const enrolledF = await new Promise<{ agent_config_json: string; broker_warning: string }>((resolve, reject) => {
    devices.EnrollDevice!.call(devices, { id: 'dev-f', labels: {} }, metadata, (error: Error | null, response: { agent_config_json: string; broker_warning: string }) => (error ? reject(error) : resolve(response)));
  });
  const configF = AgentConfigSchema.parse(JSON.parse(enrolledF.agent_config_json));
  assert.match(enrolledF.broker_warning ?? '', /^device dev-f is enrolled, but the broker could not be updated \(cannot write .*EEXIST.*\): it cannot connect until it is; the server keeps retrying$/);

  // CLI: the config is written as always, the warning goes to stderr, and the exit code is 3.
  const out = join(dir, 'dev-g.json');
  const enrolledG = await runCli(['devices', 'enroll', '--id', 'dev-g', '--out', out, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(enrolledG.code, 3, enrolledG.stderr);
  assert.equal(enrolledG.stdout, '');
  assert.match(
    enrolledG.stderr,
    /^enrolled dev-g; its agent config \(with secrets\) is in .*dev-g\.json\nfleetprune: warning: device dev-g is enrolled, but the broker could not be updated \(cannot write Mosquitto's password and ACL files into .* \(EEXIST.*\): it cannot connect until it is; the server keeps retrying\n$/,
  );
  const configG = AgentConfigSchema.parse(JSON.parse(await readFile(out, 'utf8')));
  assert.equal(configG.deviceId, 'dev-g');
  assert.equal((await stat(out)).mode & 0o777, 0o600);
  assert.equal(await metric(server, 'fleetprune_fleet_broker_credentials_stale'), 1);

  // Fixed: the background retry rewrites the files, Mosquitto reloads them and drops the revoked device.
  const fixedAt = Date.now();
  await symlink(mosquitto.authDir, join(dir, 'link'));
  await rename(join(dir, 'link'), serverAuthDir);
  // Every failed rewrite (the requests' own too) doubles the retry delay, up to 30 s: allow for the cap.
  await waitFor(async () => (await metric(server, 'fleetprune_fleet_broker_credentials_stale')) === 0, 40_000, 'the files rewritten in the background');
  await waitFor(() => closed, 10_000, 'Mosquitto to disconnect the revoked device');
  t.diagnostic(`the files were rewritten and dev-a disconnected ${Date.now() - fixedAt} ms after the directory was fixed`);
  await assert.rejects(connectClient(mosquitto.url, { clientId: 'dev-a', username: 'dev-a', password: configs.a.broker.password }), /Bad username or password|Not authorized/i, 'the revoked device is refused');
  // The devices enrolled meanwhile can connect now.
  for (const config of [configE, configF, configG]) {
    let client: Awaited<ReturnType<typeof connectClient>> | undefined;
    const { username, password } = config.broker;
    await waitFor(async () => Boolean((client = await connectClient(mosquitto.url, { clientId: username, username, password }).catch(() => undefined))), 10_000, `${username} connected`);
    await client!.endAsync(true);
  }
  // Later revocations are answered 204 again, and later enrollments carry no warning.
  assert.equal((await server.request('DELETE', '/api/devices/dev-d')).status, 204);
  const later = await server.request('POST', '/api/devices', { json: { id: 'dev-h', labels: {} } });
  assert.equal(later.status, 201);
  AgentConfigSchema.parse(await later.json());
  assert.deepEqual(['fleetprune-broker-updated', 'fleetprune-broker-problem', 'fleetprune-warning'].map((name) => later.headers.get(name)), [null, null, null]);
});
