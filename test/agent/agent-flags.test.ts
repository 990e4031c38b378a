import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError, mapConcurrently, runCli, tempDir } from '../helpers/cli.ts';

test('--bench-samples and --bench-batches beyond what a benchmark can hold stop the agent at start, on one line (not every candidate\'s benchmark later)', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-flags-');
  const base = ['agent', '--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'data')];
  const cases = [
    ['--bench-samples', '1e10'],
    ['--bench-batches', '1000001'],
    ['--bench-samples', '0'],
  ];
  const results = await mapConcurrently(cases, 2, ([flag, value]) => runCli([...base, flag!, value!], {}, { timeoutMs: 60_000 }));
  for (const [i, result] of results.entries()) {
    assert.equal(result.code, 2, `${cases[i]!.join(' ')}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    // The flag that is wrong, by itself.
    assert.match(result.stderr, new RegExp(`^fleetprune: ${cases[i]![0]}: must be between 1 and 1000000$`, 'm'), cases[i]!.join(' '));
  }
  // The largest allowed values pass the check (the missing config is what stops this one).
  const largest = await runCli([...base, '--bench-samples', '1000000', '--bench-batches', '1000000'], {}, { timeoutMs: 60_000 });
  assert.equal(largest.code, 2);
  assert.match(largest.stderr, /cannot read agent config/);
});

test('--http-host that is empty, or no address of this machine, stops the agent at start, naming the flag, before its data dir is made', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-host-');
  const cases: [string, RegExp][] = [
    // Node reads an empty host as every interface: an empty FLEETPRUNE_AGENT_ARGS substitution would expose the API.
    ['', /^fleetprune: --http-host: must not be empty \(0\.0\.0\.0 listens on every interface\)$/],
    ['999.1.1.1', /^fleetprune: --http-host: cannot listen on 999\.1\.1\.1 \(not an IP address or a resolvable host name\)$/],
    ['192.0.2.1', /^fleetprune: --http-host: cannot listen on 192\.0\.2\.1 \(not an address of this machine\)$/],
  ];
  const results = await mapConcurrently(cases, 2, ([host]) => runCli(['agent', '--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'data'), '--http-host', host], {}, { timeoutMs: 60_000 }));
  for (const [i, result] of results.entries()) {
    assert.equal(result.code, 2, `${JSON.stringify(cases[i]![0])}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr.trimEnd(), cases[i]![1]);
  }
  assert.equal(existsSync(join(dir, 'data')), false, 'no data dir was made');
});

test('a --holdout the agent cannot read is one line naming the flag and the file', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-holdout-');
  const result = await runCli(['agent', '--config', join(dir, 'nope.json'), '--data-dir', join(dir, 'data'), '--holdout', join(dir, 'nope.csv'), '--label', 'y'], {}, { timeoutMs: 60_000 });
  assert.equal(result.code, 2, result.stderr);
  assert.ok(isOneLineError(result.stderr), result.stderr);
  assert.equal(result.stderr, `fleetprune: --holdout: cannot read data file ${join(dir, 'nope.csv')}: no such file\n`);
});
