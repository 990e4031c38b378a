import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isOneLineError, runCli, runCliBatch } from '../helpers/cli.ts';
import { spawnServer } from '../server/helpers/server-process.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { tempDir } from '../helpers/cli.ts';

test('fleetprune assign: an empty --selector (an unset shell variable) is refused, not taken as every device', async (t) => {
  const server = await spawnServer(t, await tempDir(t));
  const connection = ['--server', `127.0.0.1:${server.grpcPort}`, '--token', ADMIN_TOKEN];
  for (const selector of ['', ' ']) {
    const result = await runCli(['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--selector', selector, ...connection]);
    assert.equal(result.code, 2, result.stderr);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, /--selector: no key=value pairs given/);
  }
});

test('fleetprune assign: an empty --device (an unset shell variable) is refused naming --device, not as a missing --selector', async () => {
  const results = await runCliBatch(['', ' ', ','].map((device) => ({ args: ['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--device', device, '--server', '127.0.0.1:1', '--token', ADMIN_TOKEN] })));
  for (const result of results) {
    assert.equal(result.code, 2, result.stderr);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, /--device: no device ids given/);
  }
});

test('fleetprune assign: --all-devices is a third way to name the targets, exclusive with the other two', async () => {
  const base = ['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--server', '127.0.0.1:1', '--token', ADMIN_TOKEN];
  const results = await runCliBatch([
    { args: base },
    { args: [...base, '--all-devices', '--selector', 'site=osaka'] },
    { args: [...base, '--all-devices', '--device', 'osaka-1'] },
  ]);
  for (const result of results) {
    assert.equal(result.code, 2, result.stderr);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, /give exactly one of --selector, --device and --all-devices/);
  }
});

test('a device id or device list the server refuses is named by its flag (--device, --id), not by the gRPC field; rollout status --devices is refused without --json', async (t) => {
  const server = await spawnServer(t, await tempDir(t));
  const dir = await tempDir(t);
  const connection = ['--server', `127.0.0.1:${server.grpcPort}`, '--token', ADMIN_TOKEN];
  const assign = ['assign', '--model', 'iris', '--version', '1', '--role', 'candidate'];
  const [emptyId, repeated, badEnrollId, devicesWithoutJson, several] = await runCliBatch([
    { args: [...assign, '--device', 'd1,,d2', ...connection] },
    { args: [...assign, '--device', 'd1,d2', '--device', 'd1', ...connection] },
    { args: ['devices', 'enroll', '--id', '_d4', '--out', `${dir}/d4.json`, ...connection] },
    { args: ['rollout', 'status', 'ro-0123456789ab', '--devices', '5', ...connection] },
    // Several problems in one refusal: each named by its flag.
    { args: ['assign', '--model', '.iris', '--version', '1', '--role', 'candidate', '--device', 'd1,,d2', ...connection] },
  ]);
  assert.match(several!.stderr, /^fleetprune: --model: .*; --device \(value 2\): must be 1-64 characters/);
  assert.doesNotMatch(several!.stderr, /request\./);
  assert.match(emptyId!.stderr, /^fleetprune: --device \(value 2\): must be 1-64 characters/);
  assert.equal(repeated!.stderr, 'fleetprune: --device: must not repeat a device\n');
  assert.match(badEnrollId!.stderr, /^fleetprune: --id: must be 1-64 characters of A-Z a-z 0-9 \. _ - \(starting with a letter or digit\)\n$/);
  assert.deepEqual([devicesWithoutJson!.code, devicesWithoutJson!.stderr], [2, 'fleetprune: --devices: only with --json (the text view shows no device states)\n']);
  for (const run of [emptyId, repeated, badEnrollId]) assert.equal(run!.code, 2, run!.stderr);
});
