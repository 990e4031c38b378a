import assert from 'node:assert/strict';
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
    assert.match(result.stderr, /--bench-samples and --bench-batches: must be between 1 and 1000000$/m, cases[i]!.join(' '));
  }
  // The largest allowed values pass the check (the missing config is what stops this one).
  const largest = await runCli([...base, '--bench-samples', '1000000', '--bench-batches', '1000000'], {}, { timeoutMs: 60_000 });
  assert.equal(largest.code, 2);
  assert.match(largest.stderr, /cannot read agent config/);
});
