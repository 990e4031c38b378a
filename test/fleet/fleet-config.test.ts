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
    [{ dataDir: '/x', publicUrl: 'https://fleet.example/?site=a' }, /--public-url: must be a base URL without a query/],
    [{ dataDir: '/x', publicUrl: 'https://ops:pw@fleet.example' }, /--public-url: must be a base URL without a query/],
    // Nothing listens there: every device would fail its first download.
    [{ dataDir: '/x', publicUrl: 'http://fleet.example:0' }, /--public-url: port 0 is no server's port/],
    [{ dataDir: '/x', cohortLabel: 'a b' }, /--cohort-label/],
    // No device can have a reserved label key: such a cohort label would read an object's own members.
    [{ dataDir: '/x', cohortLabel: '__proto__' }, /--cohort-label: label key "__proto__" is reserved$/],
    [{ dataDir: '/x', cohortLabel: 'constructor' }, /--cohort-label: label key "constructor" is reserved$/],
    // Logged and written into agent configs: no credentials in it.
    [{ dataDir: '/x', mqttUrl: 'mqtt://fleet:S3cret@broker:1883', mqttPassword: 'password1' }, /--mqtt-url: must not hold user:password@/],
    [{ dataDir: '/x', mqttPublicUrl: 'mqtts://fleet:S3cret@broker:8883' }, /--mqtt-public-url: must not hold user:password@/],
    [{ dataDir: '/x', metricsAuth: 'basic' as 'token' }, /--metrics-auth: must be one of "none", "token"$/],
    // mqtt.js reads port 0 as 1883: the server and its devices would talk to another broker.
    [{ dataDir: '/x', mqttUrl: 'mqtt://broker:0', mqttPassword: 'password1' }, /--mqtt-url: port 0 is no broker's port/],
    [{ dataDir: '/x', mqttPublicUrl: 'mqtt://broker:0' }, /--mqtt-public-url: port 0 is no broker's port/],
    // MQTT's CONNECT carries at most 65,535 bytes of password.
    [{ dataDir: '/x', mqttUrl: 'mqtt://broker:1883', mqttPassword: 'p'.repeat(65_536) }, /FLEETPRUNE_MQTT_PASSWORD: must be at most 65535 bytes of UTF-8/],
  ];
  for (const [input, message] of refusals) assert.throws(() => parseServerConfig(input), message, JSON.stringify(input));
});

test('report rate limit settings: unset keeps the fleet defaults; each bad value names its flag and variable', () => {
  const unset = parseServerConfig({ dataDir: '/tmp/x' });
  assert.deepEqual([unset.reportBurst, unset.reportRefillMs], [undefined, undefined]);
  // Strings as the environment gives them, numbers as the flags do.
  const set = parseServerConfig({ dataDir: '/tmp/x', reportBurst: '3' as unknown as number, reportRefillMs: 500 });
  assert.deepEqual([set.reportBurst, set.reportRefillMs], [3, 500]);
  for (const [key, named, max] of [['reportBurst', /: --report-burst \(or FLEETPRUNE_REPORT_BURST\): must be a whole number from 1 to 10000$/, 10_001], ['reportRefillMs', /: --report-refill-ms \(or FLEETPRUNE_REPORT_REFILL_MS\): must be a whole number from 1 to 3600000$/, 3_600_001]] as const) {
    for (const value of [0, -1, 1.5, 'abc', '', max]) {
      assert.throws(() => parseServerConfig({ dataDir: '/tmp/x', [key]: value as number }), named, `${key}: ${JSON.stringify(value)}`);
    }
  }
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

// `--cohort-label toString` is a label key like any other; a device without that label read the
// Object member (a function), no store could bind it, and every report of the server failed.
test('the cohort of a device without the cohort label is none, whatever the label key (toString, hasOwnProperty)', async () => {
  const { cohortOf } = await import('../../server/fleet/store-fleet-ingest.ts');
  for (const key of ['toString', 'hasOwnProperty', 'valueOf', 'cohort']) {
    assert.equal(cohortOf({ site: 'x' }, key), 'none', key);
    assert.equal(cohortOf({ [key]: 'ring-1' }, key), 'ring-1', key);
  }
  assert.equal(parseServerConfig({ dataDir: '/tmp/x', cohortLabel: 'toString' }).cohortLabel, 'toString');
});
