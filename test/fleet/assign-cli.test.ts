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
