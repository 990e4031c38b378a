import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HOLD_AFTER_READY_LINE_ENV } from '../helpers/hold-after-ready-line.ts';
import { spawnServer } from './helpers/server-process.ts';

// SIGHUP: the terminal it was started from closed. It ended the server at once (Node's default),
// without closing its store, broker and listeners.
for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
  test(`a server sent ${signal} as soon as it prints its listening line stops cleanly`, async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-ready-signal-server-'));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const server = await spawnServer(t, dataDir, [], { ...HOLD_AFTER_READY_LINE_ENV, FLEETPRUNE_LOG_LEVEL: 'info' });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => server.child.once('exit', (code, signal) => resolve({ code, signal })));
    server.child.kill(signal);
    assert.deepEqual(await exited, { code: 0, signal: null }, server.stderr());
    assert.match(server.stderr(), new RegExp(`"signal":"${signal}".*"msg":"shutting down"`));
  });
}
