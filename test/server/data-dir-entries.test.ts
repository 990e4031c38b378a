import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

/** The entries of --data-dir the server creates and writes: a file in their place is refused in one line naming it, exit 2 (as keys/ is). */
const cases = [
  { entry: 'blobs', message: (dir: string) => `--data-dir: ${join(dir, 'blobs')} is not a directory` },
  { entry: 'jobs', message: (dir: string) => `--data-dir: ${join(dir, 'jobs')} is not a directory` },
  { entry: 'blobs/tmp', message: (dir: string) => `blob store: ${join(dir, 'blobs', 'tmp')} is not a directory` },
];

for (const { entry, message } of cases) {
  test(`server --data-dir whose ${entry} is a file: one line naming it, exit 2, not an internal error`, async (t) => {
    const dir = await tempDir(t, 'fleetprune-data-dir-');
    await mkdir(join(dir, entry, '..'), { recursive: true });
    await writeFile(join(dir, entry), 'not a directory\n');
    const run = await runCli(
      ['server', '--data-dir', dir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'],
      { FLEETPRUNE_ADMIN_TOKEN: 'test-admin-token-0123456789abcdef' },
      { timeoutMs: 60_000 },
    );
    assert.equal(run.code, 2, run.stderr);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.equal(run.stderr, `fleetprune: ${message(dir)}\n`);
  });
}
