import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

test('every gRPC request over --max-body-bytes is RESOURCE_EXHAUSTED naming the option, as REST answers 413, and changes nothing', { timeout: 60_000 }, async (t) => {
  const maxBodyBytes = 2000;
  const server = (await startTestServer(t, { config: { maxBodyBytes } }))!;
  const devices = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  t.after(() => devices.close());
  t.after(() => models.close());
  const labels = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`key${i}`, 'v'.repeat(100)]));
  const rest = await server.request('POST', '/api/devices', { json: { id: 'big-1', labels } });
  assert.equal(rest.status, 413, await rest.text());
  const tooLarge = (error: any) => {
    assert.equal(error.code, status.RESOURCE_EXHAUSTED, `${status[error.code]}: ${error.details}`);
    assert.match(error.details, /^request: \d+ bytes, larger than the 2000-byte limit \(--max-body-bytes\)$/);
    return true;
  };
  await assert.rejects(devices.call('EnrollDevice', { id: 'big-1', labels }), tooLarge);
  await assert.rejects(models.call('PushVersion', { name: 'iris', manifest_json: JSON.stringify({ pad: 'x'.repeat(3000) }) }), tooLarge);
  assert.equal((await server.request('GET', '/api/devices/big-1')).status, 404, 'not enrolled');
  // Within the limit, the same call is read.
  await devices.call('EnrollDevice', { id: 'small-1', labels: { site: 'a' } });
  assert.equal((await server.request('GET', '/api/devices/small-1')).status, 200);
});
