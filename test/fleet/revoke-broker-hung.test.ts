import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { runCli } from '../helpers/cli.ts';
import { tcpReachable } from '../helpers/engines.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';

/**
 * A revoke clears the device's retained status on the broker. A broker that stops answering (hung,
 * or a half-open connection the server still believes up: SIGSTOP stands in for both) must not
 * hold the revoke's answer up: the revocation is stored and the broker's files rewritten, and the
 * clear, which waits for the broker's acknowledgement, goes on without it.
 */
test('a revoke answers while the external broker does not (the retained status clear does not hold it up)', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-revoke-hung-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(async () => {
    try {
      process.kill(mosquitto.pid!, 'SIGCONT');
    } catch {
      // gone already
    }
    await mosquitto.stop();
  });
  const server = (await startTestServer(t, { config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile } }))!;
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-a', labels: {} } });
  assert.equal(enrolled.status, 201, await enrolled.clone().text());

  process.kill(mosquitto.pid!, 'SIGSTOP');
  const answered = await Promise.race([
    server.request('DELETE', '/api/devices/dev-a').then((response) => response.status),
    new Promise<'no answer'>((resolve) => setTimeout(() => resolve('no answer'), 20_000).unref()),
  ]);
  assert.equal(answered, 204, 'the revoke is answered');
  const device = ((await (await server.request('GET', '/api/devices')).json()) as { devices: { id: string; revokedAt: string | null }[] }).devices.find((d) => d.id === 'dev-a');
  assert.ok(device?.revokedAt, `dev-a is revoked: ${JSON.stringify(device)}`);
});

test('while the server is not connected to the external broker, the device list says so (REST broker.connected, a warning from the CLI): the online states are as they were', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-broker-gone-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  const server = (await startTestServer(t, { config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile } }))!;
  assert.equal((await server.request('POST', '/api/devices', { json: { id: 'dev-a', labels: {} } })).status, 201);
  const list = async () => ((await (await server.request('GET', '/api/devices')).json()) as { broker: unknown }).broker;
  const cli = () => runCli(['devices', 'list', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.deepEqual(await list(), { connected: true });
  const live = await cli();
  assert.deepEqual([live.code, live.stderr], [0, '']);

  process.kill(mosquitto.pid!, 'SIGKILL');
  await waitFor(async () => !(await tcpReachable('127.0.0.1', mosquitto.port, 200)), 10_000, 'mosquitto down');
  const away = await waitFor(async () => (await list()) !== undefined && JSON.stringify(await list()) === '{"connected":false}', 15_000, 'the server to notice').then(
    () => 'noticed',
    (error: Error) => error.message,
  );
  const stale = await cli();
  // Started again before anything is asserted: MosquittoProcess.stop() waits for a process it did not see exit.
  await mosquitto.start();
  assert.equal(away, 'noticed');
  assert.equal(stale.code, 0, stale.stderr);
  assert.equal(stale.stderr, "fleetprune: warning: the server is not connected to the broker now; each device's state is as it was when the connection went\n");
  assert.match(stale.stdout, /^dev-a\s/m, 'the list itself is still shown');
});
