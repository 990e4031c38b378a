import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

test('fleet settings: defaults, and each bad combination names its flag', () => {
  const config = parseServerConfig({ dataDir: '/tmp/x' });
  assert.deepEqual([config.mqttPort, config.mqttUrl, config.cohortLabel, config.metricsAuth], [1883, undefined, 'cohort', 'none']);
  assert.equal(parseServerConfig({ dataDir: '/tmp/x', publicUrl: 'https://fleet.example/' }).publicUrl, 'https://fleet.example');
  const refusals: [Parameters<typeof parseServerConfig>[0], RegExp][] = [
    [{ dataDir: '/x', mqttUrl: 'http://broker:1883', mqttPassword: 'password1' }, /--mqtt-url: must be an mqtt:\/\/ or mqtts:\/\/ URL/],
    [{ dataDir: '/x', mqttUrl: 'mqtt://broker:1883' }, /FLEETPRUNE_MQTT_PASSWORD: an external broker needs/],
    [{ dataDir: '/x', mosquittoDir: '/etc/m' }, /--mosquitto-dir: only applies with --mqtt-url/],
    [{ dataDir: '/x', mqttUrl: 'mqtt://b:1', mqttPassword: 'password1', mosquittoPidFile: '/run/m.pid' }, /--mosquitto-pid-file: needs --mosquitto-dir/],
    [{ dataDir: '/x', mqttPort: 70000 }, /--mqtt-port/],
    [{ dataDir: '/x', publicUrl: 'fleet.example' }, /--public-url/],
    [{ dataDir: '/x', cohortLabel: 'a b' }, /--cohort-label/],
    [{ dataDir: '/x', metricsAuth: 'basic' as 'token' }, /--metrics-auth: .*"none".*"token"/],
  ];
  for (const [input, message] of refusals) assert.throws(() => parseServerConfig(input), message, JSON.stringify(input));
});

test('fleetprune server: a taken --mqtt-port is one line, exit 2', async (t) => {
  const net = await import('node:net');
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const port = (blocker.address() as import('node:net').AddressInfo).port;
  const result = await runCli(['server', '--data-dir', await tempDir(t), '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', String(port)]);
  assert.equal(result.code, 2);
  assert.ok(isOneLineError(result.stderr) && result.stderr.includes(`--mqtt-port: cannot listen on 127.0.0.1:${port}`), result.stderr);
});
