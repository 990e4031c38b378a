import assert from 'node:assert/strict';
import { connect, constants } from 'node:http2';
import { test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** A length-delimited protobuf field (wire type 2) with a one-byte key and length. */
const field = (number: number, text: string) => Buffer.concat([Buffer.from([(number << 3) | 2, Buffer.byteLength(text)]), Buffer.from(text)]);

/** A gRPC frame: uncompressed, 4-byte big-endian length, message. */
function frame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/**
 * A unary call whose deadline passes before the server starts its work (a client with a deadline of
 * a few milliseconds: it passes while the token is checked) was carried out all the same: a device
 * enrolled, a token created, that the client never learnt of (its answer went nowhere), so the id
 * was taken and the token could not be revoked by label. Such a call is DEADLINE_EXCEEDED, and
 * nothing is stored. The deadline is sent as `grpc-timeout: 1n` (one nanosecond, as a raw HTTP/2
 * request: grpc-js clients refuse an expired deadline themselves), so it has passed when the handler runs.
 */
test('gRPC: a mutating call whose deadline passed before its work started is DEADLINE_EXCEEDED, and nothing is stored', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const session = connect(`http://${server.grpcAddress}`);
  t.after(() => session.close());
  const call = (path: string, message: Buffer, timeout: string) =>
    new Promise<{ status: string | undefined; message: string | undefined }>((resolve, reject) => {
      const request = session.request({
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: path,
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization: `Bearer ${ADMIN_TOKEN}`,
        'grpc-timeout': timeout,
      });
      let headers: Record<string, unknown> = {};
      request.on('response', (h) => (headers = h));
      request.on('trailers', (trailers) => (headers = { ...headers, ...trailers }));
      request.on('data', () => {});
      request.on('error', reject);
      request.on('end', () => resolve({ status: headers['grpc-status'] as string | undefined, message: headers['grpc-message'] as string | undefined }));
      request.end(frame(message));
    });

  const devices = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  const tokens = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
  t.after(() => [devices, tokens].forEach((client) => client.close()));
  const labels = async () => (await tokens.call('ListTokens', {})).tokens.map((token: { label: string }) => token.label);
  const tokensBefore = await labels();

  const enroll = await call('/fleetprune.v1.Devices/EnrollDevice', field(1, 'late-1'), '1n');
  assert.equal(enroll.status, '4', JSON.stringify(enroll)); // DEADLINE_EXCEEDED
  const created = await call('/fleetprune.v1.Tokens/CreateToken', Buffer.concat([field(1, 'viewer'), field(2, 'late token')]), '1n');
  assert.equal(created.status, '4', JSON.stringify(created));
  assert.equal((await devices.call('ListDevices', {})).devices.some((device: { id: string }) => device.id === 'late-1'), false, 'the device is not enrolled');
  assert.deepEqual(await labels(), tokensBefore, 'no token created (nor the device\'s)');

  // With time left, the same calls go through.
  assert.equal((await call('/fleetprune.v1.Devices/EnrollDevice', field(1, 'late-1'), '30S')).status, '0');
  assert.equal((await call('/fleetprune.v1.Tokens/CreateToken', Buffer.concat([field(1, 'viewer'), field(2, 'late token')]), '30S')).status, '0');
  assert.equal((await devices.call('ListDevices', {})).devices.some((device: { id: string }) => device.id === 'late-1'), true);
  assert.ok((await labels()).includes('late token'));
});
