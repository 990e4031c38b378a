import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NotARegularFileError, readRegularFile } from '../../shared/util/read-regular-file.ts';
import { tempDir } from '../helpers/cli.ts';

test('readRegularFile reads a file of up to maxBytes, multi-byte text whole', async (t) => {
  const path = join(await tempDir(t, 'fleetprune-read-'), 'a.json');
  const text = `{"name":"${'é'.repeat(50_000)}"}`; // 100,011 bytes, over the 64 KiB read size
  await writeFile(path, text);
  assert.equal(await readRegularFile(path, Buffer.byteLength(text)), text);
  await assert.rejects(readRegularFile(path, Buffer.byteLength(text) - 1), (error: unknown) => error instanceof NotARegularFileError && /larger than 100010 bytes \(100011\)/.test(error.message));
  await writeFile(path, '');
  assert.equal(await readRegularFile(path, 10), '');
});

test('readRegularFile counts the bytes it reads, not only the size the file reports (a /proc file reports 0)', async () => {
  const path = '/proc/self/status';
  const whole = await readRegularFile(path, 1 << 20);
  assert.ok(whole.length > 100, 'the file has content although its size says 0');
  await assert.rejects(readRegularFile(path, 64), (error: unknown) => error instanceof NotARegularFileError && /larger than 64 bytes \(it grew while read\)/.test(error.message));
});

test('readRegularFile refuses a directory and a device without reading them', async () => {
  await assert.rejects(readRegularFile(tmpdir(), 10), (error: unknown) => error instanceof NotARegularFileError && error.code === 'EISDIR');
  await assert.rejects(readRegularFile('/dev/zero', 10), (error: unknown) => error instanceof NotARegularFileError && /not a regular file/.test(error.message));
});
