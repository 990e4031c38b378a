import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MqttFrameScanner } from '../../server/broker/mqtt-frame-scanner.ts';
import { connectPacket, remainingLength } from './raw-mqtt.ts';

const LIMIT = 1000;

function packet(type: number, bodyBytes: number): Buffer {
  return Buffer.concat([Buffer.from([type]), remainingLength(bodyBytes), Buffer.alloc(bodyBytes, 0xff)]);
}

/** Packets whose bodies are 0xff bytes: a scanner that lost the boundaries would read one as a header with a continuation bit. */
const stream = Buffer.concat([connectPacket('dev-1', 'dev-1', 'x'.repeat(43)), packet(0x30, 127), packet(0x32, 128), packet(0xc0, 0), packet(0x30, LIMIT), packet(0xe0, 0)]);

test('frame scanner: follows packet boundaries however the stream is cut', () => {
  for (const size of [stream.length, 1, 2, 3, 7, 128, 129]) {
    const scanner = new MqttFrameScanner(LIMIT);
    for (let offset = 0; offset < stream.length; offset += size) assert.equal(scanner.scan(stream.subarray(offset, offset + size)), null, `pieces of ${size}`);
    // Still on a boundary: the next header is read as one.
    assert.deepEqual(scanner.scan(Buffer.concat([Buffer.from([0x30]), remainingLength(LIMIT + 1)])), { reason: 'too-large', declaredBytes: LIMIT + 1 }, `pieces of ${size}`);
  }
});

test('frame scanner: refuses at the header, before the body, also when the length is split across reads', () => {
  const header = Buffer.concat([Buffer.from([0x10]), remainingLength(200_000_000)]);
  assert.equal(header.length, 5);
  const scanner = new MqttFrameScanner(LIMIT);
  assert.equal(scanner.scan(header.subarray(0, 3)), null);
  assert.deepEqual(scanner.scan(header.subarray(3)), { reason: 'too-large', declaredBytes: 200_000_000 });
  // Once refused, always refused.
  assert.deepEqual(scanner.scan(Buffer.from([0xc0, 0])), { reason: 'too-large', declaredBytes: 200_000_000 });
});

test('frame scanner: a remaining length with a continuation bit on its 4th byte is malformed', () => {
  const scanner = new MqttFrameScanner(Number.MAX_SAFE_INTEGER);
  assert.equal(scanner.scan(Buffer.from([0x30, 0xff, 0xff])), null);
  assert.deepEqual(scanner.scan(Buffer.from([0xff, 0x80, 0x01])), { reason: 'malformed-length' });
  // The largest 4-byte length is well formed.
  assert.equal(new MqttFrameScanner(Number.MAX_SAFE_INTEGER).scan(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])), null);
});

test('frame scanner: the first packet (the CONNECT, read before any password check) has its own, smaller limit', () => {
  const scanner = new MqttFrameScanner(LIMIT, 100);
  assert.deepEqual(scanner.scan(Buffer.concat([Buffer.from([0x10]), remainingLength(101)])), { reason: 'too-large', declaredBytes: 101 });
  const connected = new MqttFrameScanner(LIMIT, 100);
  assert.equal(connected.scan(packet(0x10, 100)), null);
  assert.equal(connected.scan(packet(0x30, LIMIT)), null, 'later packets have the full limit');
});

test('setLimit changes the limit of the packets still to come, not the first packet\'s', () => {
  const scanner = new MqttFrameScanner(1000, 50);
  scanner.setLimit(5000);
  assert.deepEqual(scanner.scan(Buffer.concat([Buffer.from([0x10]), remainingLength(51)])), { reason: 'too-large', declaredBytes: 51 }, 'the first packet keeps its own limit');
  const lowered = new MqttFrameScanner(100_000, 50);
  assert.equal(lowered.scan(Buffer.concat([Buffer.from([0x10]), remainingLength(10), Buffer.alloc(10)])), null);
  lowered.setLimit(2000);
  assert.equal(lowered.scan(Buffer.concat([Buffer.from([0x30]), remainingLength(2000), Buffer.alloc(2000)])), null, 'a packet of exactly the new limit');
  assert.deepEqual(lowered.scan(Buffer.concat([Buffer.from([0x30]), remainingLength(2001)])), { reason: 'too-large', declaredBytes: 2001 });
});
