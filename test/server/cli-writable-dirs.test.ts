import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isOneLineError, runCli } from '../helpers/cli.ts';

const WINE = fileURLToPath(new URL('../../shared/datasets/wine.csv', import.meta.url));
const procMissing = existsSync('/proc/self') ? false : 'no /proc here';

test('server --data-dir under a directory that takes no new entries (/proc) fails at once naming the flag (it hung in mkdir)', { skip: procMissing }, async () => {
  const run = await runCli(['server', '--data-dir', '/proc/fleetprune-x/data', '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], {}, { timeoutMs: 60_000 });
  // A hang is what this guards against: killed after 60 s (10 s was too short for a loaded machine's start-up).
  assert.equal(run.code, 2, `still running after 60 s (-1) or crashed: ${run.stderr}`);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.equal(run.stderr, 'fleetprune: --data-dir: cannot create /proc/fleetprune-x/data (/proc is not a writable directory: no such file or directory)\n');
});

test('prune --out under /proc names the flag and the directory, not an internal probe file', { skip: procMissing }, async () => {
  const run = await runCli(['prune', '--data', WINE, '--label', 'cultivar', '--out', '/proc/fleetprune-out'], {}, { timeoutMs: 60_000 });
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.doesNotMatch(run.stderr, /write-check/);
  assert.equal(run.stderr, 'fleetprune: --out: cannot write output directory /proc/fleetprune-out: cannot create files in /proc (no such file or directory)\n');
});
