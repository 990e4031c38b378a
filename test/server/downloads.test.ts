import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { startTestServer } from './helpers/test-server.ts';

test('HTTP downloads resume with ETag, Range, If-Range; unsatisfiable ranges are 416, unparseable ones ignored', async (t) => {
  // Every download (and the server's own listeners on its response) without Node's listener-leak warning:
  // the request metric's listener made it an eleventh 'close' listener, warned about on every download.
  const leaks: string[] = [];
  const onWarning = (warning: Error) => {
    if (warning.name === 'MaxListenersExceededWarning') leaks.push(warning.message);
  };
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey, units: 64 });
  await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
  const { sha256 } = artifact.manifest.files['tfjs/weights.bin']!;
  const file = await readFile(join(artifact.dir, 'tfjs/weights.bin'));
  const path = `/api/blobs/${sha256}`;

  const full = await server.request('GET', path);
  assert.equal(full.status, 200);
  assert.equal(full.headers.get('etag'), `"${sha256}"`);
  assert.equal(full.headers.get('accept-ranges'), 'bytes');
  // Immutable, but only for the client that asked with its token: a shared cache must not serve it to others.
  assert.equal(full.headers.get('cache-control'), 'private, max-age=31536000, immutable');
  assert.deepEqual(Buffer.from(await full.arrayBuffer()), file);

  // An interrupted download resumes from byte 100.
  const rest = await server.request('GET', path, { headers: { range: 'bytes=100-', 'if-range': `"${sha256}"` } });
  assert.equal(rest.status, 206);
  assert.equal(rest.headers.get('content-range'), `bytes 100-${file.length - 1}/${file.length}`);
  assert.deepEqual(Buffer.concat([file.subarray(0, 100), Buffer.from(await rest.arrayBuffer())]), file);

  const middle = await server.request('GET', path, { headers: { range: 'bytes=10-19' } });
  assert.deepEqual(Buffer.from(await middle.arrayBuffer()), file.subarray(10, 20));
  const suffix = await server.request('GET', path, { headers: { range: 'bytes=-5' } });
  assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), file.subarray(file.length - 5));

  const staleIfRange = await server.request('GET', path, { headers: { range: 'bytes=100-', 'if-range': '"something-else"' } });
  assert.equal(staleIfRange.status, 200, 'a changed validator sends the whole file');
  await staleIfRange.arrayBuffer();

  const beyond = await server.request('GET', path, { headers: { range: `bytes=${file.length}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get('content-range'), `bytes */${file.length}`);
  // The refusal is a JSON error, not the blob: its type says so, and it is not cached as the blob is.
  assert.match(beyond.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(beyond.headers.get('cache-control'), 'no-store', 'as every API answer that is no download');
  assert.equal(beyond.headers.get('etag'), null);
  assert.equal(((await beyond.json()) as any).error.code, 'range_not_satisfiable');
  assert.equal((await server.request('GET', path, { headers: { range: 'bytes=9-3' } })).status, 416);
  assert.equal((await server.request('GET', path, { headers: { range: 'bytes=-0' } })).status, 416);

  // A Range header that does not parse is ignored (RFC 9110 §14.2): the whole blob, 200.
  for (const junk of ['bytes=abc', 'bytes=-', 'bytes=1-2-3', 'bytes=', 'items=0-5', 'garbage']) {
    const ignored = await server.request('GET', path, { headers: { range: junk } });
    assert.equal(ignored.status, 200, `Range: ${junk}`);
    assert.equal(ignored.headers.get('content-range'), null);
    assert.deepEqual(Buffer.from(await ignored.arrayBuffer()), file, `Range: ${junk}`);
  }

  const notModified = await server.request('GET', path, { headers: { 'if-none-match': `"${sha256}"` } });
  assert.equal(notModified.status, 304);

  // If-Match compares strongly: this blob's tag (or *) sends it; another's, or a weak one, is 412 and sends nothing.
  for (const tag of [`"${sha256}"`, '*', `"${'0'.repeat(64)}", "${sha256}"`]) {
    const matched = await server.request('GET', path, { headers: { 'if-match': tag } });
    assert.equal(matched.status, 200, `If-Match: ${tag}`);
    assert.deepEqual(Buffer.from(await matched.arrayBuffer()), file);
  }
  for (const tag of [`"${'0'.repeat(64)}"`, `W/"${sha256}"`]) {
    const refused = await server.request('GET', path, { headers: { 'if-match': tag, range: 'bytes=0-9' } });
    assert.equal(refused.status, 412, `If-Match: ${tag}`);
    const body = (await refused.json()) as any;
    assert.equal(body.error.code, 'precondition_failed');
    assert.equal(body.error.message, `If-Match: none of its tags is this blob's ETag "${sha256}" (strong comparison)`);
  }
  assert.equal((await server.request('GET', `/api/blobs/${'f'.repeat(64)}`)).status, 404);
  // Warnings are emitted on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(leaks, [], 'no listener-leak warning');
});

test('fleetprune_blob_bytes_served_total counts the body bytes sent: none for HEAD, 304 or 416, the range for a 206, the blob for a 200', async (t) => {
  const server = (await startTestServer(t))!;
  const blob = Buffer.alloc(100_000, 3);
  const sha256 = createHash('sha256').update(blob).digest('hex');
  const path = `/api/blobs/${sha256}`;
  assert.equal((await server.request('PUT', path, { body: blob, headers: { 'content-type': 'application/octet-stream' } })).status, 201);
  const served = async () => {
    const text = await (await server.request('GET', '/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith('fleetprune_blob_bytes_served_total{transport="http"}'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  for (let i = 0; i < 3; i++) {
    const headOnly = await server.request('HEAD', path);
    assert.equal(headOnly.status, 200);
    assert.equal(headOnly.headers.get('content-length'), String(blob.length), 'HEAD announces the length of the body it does not send');
  }
  assert.equal(await served(), 0, 'HEAD sends no body');
  assert.equal((await server.request('GET', path, { headers: { 'if-none-match': `"${sha256}"` } })).status, 304);
  const unsatisfiable = await server.request('GET', path, { headers: { range: `bytes=${blob.length}-` } });
  assert.equal(unsatisfiable.status, 416);
  await unsatisfiable.arrayBuffer();
  assert.equal(await served(), 0, 'a 304 or a 416 sends none of the blob');
  const part = await server.request('GET', path, { headers: { range: 'bytes=10-19' } });
  assert.equal(part.status, 206);
  assert.equal((await part.arrayBuffer()).byteLength, 10);
  assert.equal(await served(), 10, 'a 206 counts its range');
  const whole = await server.request('GET', path);
  assert.equal((await whole.arrayBuffer()).byteLength, blob.length);
  assert.equal(await served(), 10 + blob.length, 'a 200 counts the whole blob');
});

test('gRPC chunked download equals the file, also from an offset', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 2, privateKey: signer.privateKey, units: 64 });
  await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
  const { sha256 } = artifact.manifest.files['model.onnx']!;
  const file = await readFile(join(artifact.dir, 'model.onnx'));
  const created = (await (await server.request('POST', '/api/tokens', { json: { role: 'device' } })).json()) as any;
  const client = grpcClient(server.grpcAddress, 'Blobs', created.token);
  t.after(() => client.close());
  const chunks = await client.stream('DownloadBlob', { sha256, chunk_size: 1000 });
  assert.ok(chunks.length > 1, 'several chunks');
  assert.ok(chunks.slice(0, -1).every((chunk: any) => chunk.data.length === 1000));
  assert.deepEqual(Buffer.concat(chunks.map((chunk: any) => chunk.data)), file);
  assert.equal(chunks[0].total_bytes, String(file.length));
  const resumed = await client.stream('DownloadBlob', { sha256, offset: 1500 });
  assert.deepEqual(Buffer.concat(resumed.map((chunk: any) => chunk.data)), file.subarray(1500));
  assert.deepEqual(
    chunks.map((chunk: any) => Number(chunk.offset)),
    chunks.map((_: unknown, i: number) => i * 1000),
    'each chunk says where it starts',
  );
  await assert.rejects(client.stream('DownloadBlob', { sha256: 'f'.repeat(64) }), /no blob/);
  // A negative chunk size used to spin the server's re-chunking loop forever.
  await assert.rejects(client.stream('DownloadBlob', { sha256, chunk_size: -5 }), /chunk_size -5 must be a positive number/);
  const big = await client.stream('DownloadBlob', { sha256, chunk_size: 64 * 1024 * 1024 });
  assert.deepEqual(Buffer.concat(big.map((chunk: any) => chunk.data)), file, 'a chunk size above 1 MiB is capped, not refused');
});

test('gRPC: a download cancelled while the server waits for the client to read ends on the server', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  // 7 → 60000 → 3: a weights file of ~2.4 MB, far more than HTTP/2 buffers for a reader that stopped.
  const artifact = await makeArtifact(t, { seed: 3, privateKey: signer.privateKey, units: 60_000 });
  await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
  const { sha256, bytes } = artifact.manifest.files['tfjs/weights.bin']!;
  const created = (await (await server.request('POST', '/api/tokens', { json: { role: 'device' } })).json()) as any;
  const client = grpcClient(server.grpcAddress, 'Blobs', created.token);
  t.after(() => client.close());

  const finishedCalls = async () => {
    const text = await (await server.request('GET', '/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith('fleetprune_grpc_request_duration_seconds_count{') && l.includes('method="Blobs/DownloadBlob"'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const call = client.open('DownloadBlob', { sha256, chunk_size: 16 * 1024 });
  call.on('error', () => {});
  let received = 0;
  call.on('data', (chunk: any) => {
    received += chunk.data.length;
    call.pause();
  });
  // Once the client stops reading, the server's writes fill the stream and it waits for 'drain'.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.ok(received < bytes, `the paused client has not read the whole blob (${received} of ${bytes} bytes)`);
  assert.equal(await finishedCalls(), 0, 'the server is still in the call, waiting for the client');
  call.cancel();
  const deadline = Date.now() + 10_000;
  while ((await finishedCalls()) === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(await finishedCalls(), 1, 'the cancelled call ended on the server instead of waiting for a drain that never comes');
});

test('a download under way stops when its token is revoked: the rest of the file is never sent', async (t) => {
  const server = (await startTestServer(t))!;
  const size = 64 * 1024 * 1024;
  async function* bytes() {
    for (let sent = 0; sent < size; sent += 1024 * 1024) yield Buffer.alloc(1024 * 1024, sent / (1024 * 1024));
  }
  const { sha256 } = await server.server.ctx.blobs.put(bytes(), null, size);
  const created = (await (await server.request('POST', '/api/tokens', { json: { role: 'device', label: 'downloader' } })).json()) as { token: string; record: { id: string } };

  const response = await server.request('GET', `/api/blobs/${sha256}`, { token: created.token });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  let received = (await reader.read()).value!.length;
  assert.equal((await server.request('DELETE', `/api/tokens/${created.record.id}`)).status, 204);
  // The socket is cut: reading on fails (what was already in flight may still arrive first).
  await assert.rejects(async () => {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += chunk.value.length;
  });
  assert.ok(received < size, `only part of the file arrived (${received} of ${size} bytes)`);
  assert.equal((await server.request('GET', `/api/blobs/${sha256}`, { token: created.token })).status, 401, 'and the token opens nothing more');
});
