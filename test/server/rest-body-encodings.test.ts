import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { startTestServer, type TestServer } from './helpers/test-server.ts';
import { expectError } from './helpers/api-errors.ts';

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function auditedUploads(server: TestServer): Promise<string[]> {
  const entries = ((await (await server.request('GET', '/api/audit?limit=1000')).json()) as { entries: { action: string; target: string }[] }).entries;
  return entries.filter((entry) => entry.action === 'blob.upload').map((entry) => entry.target);
}

test('PUT /api/blobs refuses a compressed body (415) instead of storing the compressed bytes or calling it a hash mismatch', async (t) => {
  const server = (await startTestServer(t))!;
  const file = Buffer.from('the bytes of an artifact file\n'.repeat(20));
  const compressed = gzipSync(file);
  for (const [name, bytes] of [
    // A client that expects the server to inflate it: it was told the content hashes to something else, without a word on the encoding.
    ['the file', file],
    // Named by the compressed bytes' hash: it was stored compressed, though it said it is the gzip coding of another file.
    ['the compressed bytes', compressed],
  ] as const) {
    const response = await server.request('PUT', `/api/blobs/${sha256(bytes)}`, { body: compressed, headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' } });
    await expectError(response, 415, 'unsupported_media_type', /^body: unsupported content encoding "gzip"/);
    assert.equal((await server.request('GET', `/api/blobs/${sha256(bytes)}`)).status, 404, `nothing stored under the hash of ${name}`);
  }
  assert.deepEqual(await auditedUploads(server), [], 'no upload was recorded');
  // Without Content-Encoding (or with identity) the same bytes are stored as they are.
  for (const headers of [{}, { 'content-encoding': 'identity' }] as Record<string, string>[]) {
    const response = await server.request('PUT', `/api/blobs/${sha256(compressed)}`, { body: compressed, headers: { 'content-type': 'application/octet-stream', ...headers } });
    assert.ok([200, 201].includes(response.status), String(response.status));
  }
  assert.deepEqual(await auditedUploads(server), [sha256(compressed)]);
});

test('a rollout spec with a collection as a mapping key is refused without a process warning on the server stderr', async (t) => {
  const server = (await startTestServer(t))!;
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(warning.message);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  for (const spec of ['? [a, b]\n: c\n', '? {a: 1}\n: c\n', 'model: wine\n[x]: 1\n']) {
    const response = await server.request('POST', '/api/rollouts', { body: spec, headers: { 'content-type': 'application/yaml' } });
    await expectError(response, 400, 'bad_request', /^body: invalid rollout spec: /);
  }
  // process.emitWarning emits on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(warnings, []);
  const rollouts = (await (await server.request('GET', '/api/rollouts')).json()) as { total: number };
  assert.equal(rollouts.total, 0);
});
