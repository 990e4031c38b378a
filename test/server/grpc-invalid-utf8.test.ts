import assert from 'node:assert/strict';
import { credentials, makeGenericClientConstructor, Metadata, status } from '@grpc/grpc-js';
import { test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** A length-delimited protobuf field (wire type 2) with a one-byte key. */
function lengthField(number: number, bytes: Uint8Array): Buffer {
  const length: number[] = [];
  for (let n = bytes.length; ; n >>>= 7) {
    if (n < 0x80) {
      length.push(n);
      break;
    }
    length.push((n & 0x7f) | 0x80);
  }
  return Buffer.concat([Buffer.from([(number << 3) | 2, ...length]), bytes]);
}

const raw = (bytes: Buffer) => bytes;
const method = (path: string) => ({ path, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw });
const RawClient = makeGenericClientConstructor(
  { CreateToken: method('/fleetprune.v1.Tokens/CreateToken'), EnrollDevice: method('/fleetprune.v1.Devices/EnrollDevice') },
  'RawUtf8',
);

test('gRPC string fields that are not UTF-8 are INVALID_ARGUMENT naming the field, and nothing is stored (as REST refuses "\\ud800")', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const client = new RawClient(server.grpcAddress, credentials.createInsecure()) as any;
  const tokens = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
  const devices = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  t.after(() => [client, tokens, devices].forEach((c) => c.close()));
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  const send = (name: 'CreateToken' | 'EnrollDevice', bytes: Buffer) =>
    new Promise<any>((resolve) => client[name](bytes, metadata, (error: unknown, response: unknown) => resolve(error ?? response)));
  const outcome = (answer: any) => (Buffer.isBuffer(answer) ? 'accepted (answered OK)' : `${status[answer?.code]}: ${answer?.details}`);
  // A surrogate encoded as UTF-8 (ED A0..BF) is named as one; any other bad byte is not.
  const refused = (field: string, surrogate = true) => (answer: any) => {
    assert.equal(answer?.code, status.INVALID_ARGUMENT, outcome(answer));
    assert.equal(answer.details, `${field}: ${surrogate ? 'not valid UTF-8 (an unpaired surrogate, \\ud800 to \\udfff, has no UTF-8)' : 'not valid UTF-8 text; send strings as UTF-8'}`);
  };
  const role = lengthField(1, Buffer.from('viewer'));
  const labels = async () => (await tokens.call('ListTokens', {})).tokens.map((token: any) => token.label).sort();
  const before = await labels();

  // A lone surrogate as a JavaScript client encodes it (ED A0 80), a stray byte, one in a long string.
  refused('label')(await send('CreateToken', Buffer.concat([role, lengthField(2, Buffer.from([0x61, 0xed, 0xa0, 0x80, 0x62]))])));
  refused('label', false)(await send('CreateToken', Buffer.concat([role, lengthField(2, Buffer.from([0x61, 0xff, 0x62]))])));
  refused('label', false)(await send('CreateToken', Buffer.concat([role, lengthField(2, Buffer.concat([Buffer.alloc(150, 0x61), Buffer.from([0xc3])]))])));
  // Through the generated client: the label a caller gave, not three U+FFFD, or a refusal.
  await assert.rejects(tokens.call('CreateToken', { role: 'viewer', label: 'a\uD800b' }), (error: any) => (refused('label')(error), true));
  assert.deepEqual(await labels(), before, 'no token was stored');

  // Map keys and values (a nested message) are checked too.
  const entry = (key: Buffer, value: Buffer) => lengthField(2, Buffer.concat([lengthField(1, key), lengthField(2, value)]));
  const id = lengthField(1, Buffer.from('dev-1'));
  refused('labels.value')(await send('EnrollDevice', Buffer.concat([id, entry(Buffer.from('site'), Buffer.from([0x62, 0xed, 0xbf, 0xbf]))])));
  refused('labels.key', false)(await send('EnrollDevice', Buffer.concat([id, entry(Buffer.from([0xfe]), Buffer.from('x'))])));
  assert.deepEqual((await devices.call('ListDevices', {})).devices, [], 'no device was enrolled');

  // A string field sent as a number would be read past what was checked: refused as well.
  const asVarint = Buffer.concat([role, Buffer.from([(2 << 3) | 0, 3]), Buffer.from([0x61, 0xff, 0x62])]);
  const mismatched = await send('CreateToken', asVarint);
  assert.equal(mismatched?.code, status.INVALID_ARGUMENT, outcome(mismatched));
  assert.match(mismatched.details, /^label: sent with wire type 0/);
  // A number sent length-delimited, or as fixed32, fails the decoder itself: named all the same, not by byte offsets.
  for (const [bytes, wire] of [[lengthField(3, Buffer.from('abc')), 2], [Buffer.from([(3 << 3) | 5, 1, 0, 0, 0]), 5]] as const) {
    const number = await send('CreateToken', Buffer.concat([role, bytes]));
    assert.equal(number?.code, status.INVALID_ARGUMENT, outcome(number));
    assert.equal(number.details, `expires_in_s: sent with wire type ${wire}, not the 0 of its declared type`);
  }
  assert.deepEqual(await labels(), before, 'no token was stored');

  // U+FFFD itself is text: sent as UTF-8, it is stored as sent. Unknown fields are skipped.
  const unknown = lengthField(15, Buffer.from([0xff, 0xfe]));
  const created = await send('CreateToken', Buffer.concat([role, lengthField(2, Buffer.from('a\uFFFDb')), unknown]));
  assert.ok(Buffer.isBuffer(created), outcome(created));
  assert.deepEqual(await labels(), [...before, 'a\uFFFDb'].sort());
  assert.equal((await devices.call('EnrollDevice', { id: 'dev-2', labels: { site: 'Zürich 🦄' } })).broker_warning !== undefined, true);
  assert.deepEqual((await devices.call('ListDevices', {})).devices.map((device: any) => device.labels), [{ site: 'Zürich 🦄' }]);
});

test('a gRPC map given the same key twice is INVALID_ARGUMENT naming the key, and nothing is stored (as REST refuses a duplicate JSON key)', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const client = new RawClient(server.grpcAddress, credentials.createInsecure()) as any;
  const devices = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  t.after(() => [client, devices].forEach((c) => c.close()));
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  const send = (bytes: Buffer) => new Promise<any>((resolve) => client.EnrollDevice(bytes, metadata, (error: unknown, response: unknown) => resolve(error ?? response)));
  const outcome = (answer: any) => (Buffer.isBuffer(answer) ? 'accepted (answered OK)' : `${status[answer?.code]}: ${answer?.details}`);
  const entry = (key: string | null, value: string) => lengthField(2, Buffer.concat([key === null ? Buffer.alloc(0) : lengthField(1, Buffer.from(key)), lengthField(2, Buffer.from(value))]));
  const id = lengthField(1, Buffer.from('dev-dup'));

  const twice = await send(Buffer.concat([id, entry('a', 'v'), entry('site', 'x'), entry('a', 'w')]));
  assert.equal(twice?.code, status.INVALID_ARGUMENT, outcome(twice));
  assert.equal(twice.details, 'labels.a: given twice; send each key once');
  // An entry without a key has the key "" (protobuf's default): two of them are the same key too.
  const empty = await send(Buffer.concat([id, entry(null, 'v'), entry('', 'w')]));
  assert.equal(empty?.code, status.INVALID_ARGUMENT, outcome(empty));
  assert.equal(empty.details, 'labels[""]: given twice; send each key once');
  assert.deepEqual((await devices.call('ListDevices', {})).devices, [], 'no device was enrolled');

  // Distinct keys are enrolled as sent.
  const distinct = await send(Buffer.concat([id, entry('a', 'v'), entry('b', 'w')]));
  assert.ok(Buffer.isBuffer(distinct), outcome(distinct));
  assert.deepEqual((await devices.call('ListDevices', {})).devices.map((device: any) => device.labels), [{ a: 'v', b: 'w' }]);
});
