import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { connectClient } from '../helpers/mqtt-clients.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** Whether this machine can listen on IPv6 loopback. */
function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
}

test('a server on an IPv6 --host (::1) serves HTTP and gRPC there (gRPC read the address as a name to resolve)', async (t) => {
  if (!(await ipv6Loopback())) return t.skip('this machine has no IPv6 loopback (::1)');
  const server = (await startTestServer(t, { config: { host: '::1' } }))!;
  const health = await fetch(`http://[::1]:${server.server.port('http')}/healthz`);
  assert.equal(health.status, 200);
  await health.arrayBuffer();
  const tokens = grpcClient(`[::1]:${server.server.port('grpc')}`, 'Tokens', ADMIN_TOKEN);
  t.after(() => tokens.close());
  const listed = await tokens.call('ListTokens', {});
  assert.ok(Array.isArray(listed.tokens) && listed.tokens.length >= 1, JSON.stringify(listed));
  // Where an enrolled device is told to connect: URLs with the address in brackets.
  const enrolled = await fetch(`http://[::1]:${server.server.port('http')}/api/devices`, {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'dev-6', labels: {} }),
  });
  assert.equal(enrolled.status, 201);
  const config = (await enrolled.json()) as any;
  assert.equal(config.broker.url, `mqtt://[::1]:${server.server.port('mqtt')}`);
  assert.equal(config.server.url, `http://[::1]:${server.server.port('http')}`);
  // A device connects there.
  const device = await connectClient(config.broker.url, { clientId: 'dev-6', username: 'dev-6', password: config.broker.password });
  await device.endAsync(true);
});
