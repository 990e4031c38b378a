import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { cliFlags } from './cli-flags.ts';

/**
 * `--analysis-startup-grace` (FLEETPRUNE_ANALYSIS_STARTUP_GRACE): the seconds after the server
 * takes over the rollouts during which Prometheus measurements wait (docs/deployment.md).
 */
const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));

describe('--analysis-startup-grace', () => {
  it('defaults to 30 s, takes 0 (off) to 600, and is listed by `server --help` and documented with its variable and default', async () => {
    assert.equal(parseServerConfig({ dataDir: '/tmp/x' }).analysisStartupGraceSeconds, 30);
    assert.equal(parseServerConfig({ dataDir: '/tmp/x', analysisStartupGraceSeconds: '0' }).analysisStartupGraceSeconds, 0);
    assert.equal(parseServerConfig({ dataDir: '/tmp/x', analysisStartupGraceSeconds: 600 }).analysisStartupGraceSeconds, 600);
    for (const bad of [601, -1, 1.5, 'soon']) {
      assert.throws(() => parseServerConfig({ dataDir: '/tmp/x', analysisStartupGraceSeconds: bad as number }), /--analysis-startup-grace \(or FLEETPRUNE_ANALYSIS_STARTUP_GRACE\): must be a whole number from 0 to 600/, `refuses ${bad}`);
    }
    assert.ok((await cliFlags('server')).has('--analysis-startup-grace'), 'fleetprune server --help lists --analysis-startup-grace');
    const docs = await readFile(join(REPO, 'docs/deployment.md'), 'utf8');
    assert.match(docs, /`--analysis-startup-grace SECONDS`, or `FLEETPRUNE_ANALYSIS_STARTUP_GRACE`;\s+0 to 600, default `30`/);
  });

  it('the server reads FLEETPRUNE_ANALYSIS_STARTUP_GRACE, and refuses an out-of-range value before starting (exit 2, naming the flag)', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-grace-'));
    try {
      const failure = await run(process.execPath, ['bin/fleetprune.js', 'server', '--data-dir', dataDir], { cwd: REPO, timeout: 30_000, env: { ...process.env, FLEETPRUNE_ANALYSIS_STARTUP_GRACE: '601' } }).then(
        () => assert.fail('the server started with a grace of 601 s'),
        (error: { code?: number; stderr?: string }) => error,
      );
      assert.equal(failure.code, 2, `exit code (stderr: ${failure.stderr})`);
      assert.match(failure.stderr ?? '', /--analysis-startup-grace \(or FLEETPRUNE_ANALYSIS_STARTUP_GRACE\): must be a whole number from 0 to 600/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
