import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { createHttpApp } from '../../server/http/create-http-app.ts';
import { ServerMetrics } from '../../server/metrics/server-metrics.ts';
import type { TokenService } from '../../server/auth/token-service.ts';

/** The app with readiness answers the test sets; its /readyz as [status, body]. */
async function appWith(t: import('node:test').TestContext, state: { ready: boolean; storeUp: boolean; isLeader: boolean; driving: boolean }) {
  const app = createHttpApp({
    routes: [],
    tokens: {} as TokenService,
    metrics: new ServerMetrics(),
    log: pino({ level: 'silent' }),
    maxBodyBytes: 1024,
    version: 'test',
    isReady: () => state.ready,
    readiness: { storeUp: async () => state.storeUp, leader: async () => ({ isLeader: state.isLeader, leader: state.isLeader ? 'node-a:1:abcdef' : 'node-b:2:abcdef', driving: state.driving }) },
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return async (query = '') => {
    const response = await fetch(`${base}/readyz${query}`);
    return [response.status, await response.json()] as const;
  };
}

test('/readyz: starting, store down, standby, a leader still taking the rollouts over (or failed to), and ready', async (t) => {
  const state = { ready: false, storeUp: true, isLeader: true, driving: true };
  const readyz = await appWith(t, state);
  assert.deepEqual(await readyz(), [503, { status: 'starting' }]);
  state.ready = true;
  assert.deepEqual(await readyz('?role=leader'), [200, { status: 'ready', role: 'leader' }]);
  // Elected, but not driving the rollouts yet (or its takeover failed): it refuses their commands,
  // so a load balancer must not send them there; as a server it is ready.
  state.driving = false;
  assert.deepEqual(await readyz('?role=leader'), [503, { status: 'taking-over', message: 'this server leads but takes no rollout commands (elected a moment ago, or its takeover failed: see its log)' }]);
  assert.deepEqual(await readyz(), [200, { status: 'ready', role: 'leader' }]);
  state.isLeader = false;
  assert.deepEqual(await readyz('?role=leader'), [503, { status: 'standby', leader: 'node-b:2:abcdef' }]);
  assert.deepEqual(await readyz(), [200, { status: 'ready', role: 'standby' }]);
  state.storeUp = false;
  assert.deepEqual(await readyz(), [503, { status: 'store-unavailable', message: 'the database does not answer' }]);
  assert.deepEqual(await readyz('?role=nope'), [400, { error: { code: 'bad_request', message: 'role: must be "leader" (or left out), not "nope"' } }]);
  // A check with a typo is refused, not passed on a standby as a plain readiness check.
  state.storeUp = true;
  for (const query of ['?Role=leader', '?roles=leader', '?leader', '?role=leader&x=1']) {
    const [status, body] = await readyz(query);
    assert.equal(status, 400, query);
    assert.match((body as { error: { message: string } }).error.message, /^query\.\w+: unknown field \(GET \/readyz takes only role=leader\)$/, query);
  }
  assert.equal((await readyz('?role=leader&role=leader'))[0], 400, 'given twice');
});
