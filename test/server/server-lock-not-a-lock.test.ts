import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ADMIN_TOKEN } from './helpers/test-server.ts';
import { tempDir } from '../helpers/cli.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { startServer } from '../../server/app/start-server.ts';
import { createLogger } from '../../shared/util/log.ts';

test("a user's file at <data-dir>/server.lock is refused naming it, and left in place (not taken over as a stale lock)", async (t) => {
  const dataDir = await tempDir(t);
  const path = join(dataDir, 'server.lock');
  await writeFile(path, 'my notes\n');
  const config = parseServerConfig({ dataDir, host: '127.0.0.1', httpPort: 0, grpcPort: 0, mqttPort: 0, adminToken: ADMIN_TOKEN });
  // A server that starts (the file taken over) is closed again, so that the test fails rather than hangs.
  const outcome = await startServer(config, { log: createLogger('lock-test', 'silent') }).then(
    async (server) => {
      await server.close();
      return 'started';
    },
    (error: unknown) => error,
  );
  assert.ok(outcome instanceof Error, `refused: ${String(outcome)}`);
  assert.equal(outcome.message, `--data-dir: cannot lock ${dataDir} (${path} is a file with other content, not a fleetprune lock, left as it is); remove it or choose another --data-dir`);
  assert.equal(await readFile(path, 'utf8'), 'my notes\n');
  assert.deepEqual((await readdir(dataDir)).filter((name) => name.includes('lock')), ['server.lock'], 'no takeover or temporary file is left');
});
