import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';

// Far more than a client socket holds while it reads nothing (the kernel grows a receive buffer
// only as the application reads), so a stalled download cannot simply finish into buffers.
const BLOB_BYTES = 16 * 1024 * 1024;

async function serverWithBlob(t: TestContext): Promise<{ server: TestServer; sha256: string }> {
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 1 } }))!;
  const blob = randomBytes(BLOB_BYTES);
  const sha256 = createHash('sha256').update(blob).digest('hex');
  // The upload itself is under the 1 s idle timeout too: on a loaded machine a pause in it longer
  // than that ends the connection (fetch failed). The downloads are what the tests are about: retry.
  let put: Response | undefined;
  for (let attempt = 1; put === undefined; attempt++) {
    put = await server.request('PUT', `/api/blobs/${sha256}`, { body: blob, headers: { 'content-type': 'application/octet-stream' } }).catch((error) => {
      if (attempt === 5) throw error;
      return undefined;
    });
  }
  assert.equal(put.status, 201, await put.text());
  return { server, sha256 };
}

/** Resolves with the bytes a socket still delivers once resumed, when it ends; null if it does not end within `ms`. */
async function drainUntilEnd(socket: Socket, ms: number): Promise<number | null> {
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  socket.on('error', () => {});
  const ended = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  socket.resume();
  const result = await Promise.race([ended, sleep(ms).then(() => false)]);
  return result ? bytes : null;
}

test('an HTTP download whose client stops reading is closed after --idle-timeout, not held for ever', async (t) => {
  const { server, sha256 } = await serverWithBlob(t);
  const port = Number(new URL(server.baseUrl).port);
  const socket = connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  socket.pause(); // reads nothing: the server's writes back up
  await once(socket, 'connect');
  socket.write(`GET /api/blobs/${sha256} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`);
  await sleep(3000);
  const delivered = await drainUntilEnd(socket, 5000);
  assert.notEqual(delivered, null, 'the server closed the stalled connection');
  assert.ok(delivered! < BLOB_BYTES, `only what was already in flight arrives (${delivered} of ${BLOB_BYTES} bytes)`);

  // A client that keeps reading, however long the whole download takes, is not cut off.
  const full = await server.request('GET', `/api/blobs/${sha256}`);
  assert.equal((await full.arrayBuffer()).byteLength, BLOB_BYTES);
});

test('an upload that stops sending its body is closed after --idle-timeout and leaves nothing stored', async (t) => {
  const { server } = await serverWithBlob(t);
  const port = Number(new URL(server.baseUrl).port);
  const sha256 = 'ab'.repeat(32);
  const socket = connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  socket.on('data', () => {});
  socket.on('error', () => {});
  socket.write(
    `PUT /api/blobs/${sha256} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n` +
      'Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n' +
      'x'.repeat(10),
  );
  const closed = await Promise.race([once(socket, 'close').then(() => true), sleep(5000).then(() => false)]);
  assert.ok(closed, 'the server closed the connection of the stalled upload');
  assert.equal((await server.request('GET', `/api/blobs/${sha256}`)).status, 404);
  const tmp = join(server.dataDir, 'blobs', 'tmp');
  for (let i = 0; i < 50 && (await readdir(tmp)).length > 0; i++) await sleep(100);
  assert.deepEqual(await readdir(tmp), [], 'the partial upload is removed');
});

test('a gRPC download whose client froze (no ping answered) is released after --idle-timeout', async (t) => {
  const { server, sha256 } = await serverWithBlob(t);
  const [host, port] = server.grpcAddress.split(':') as [string, string];
  // A TCP proxy between client and server that can go silent both ways, as a frozen process or a
  // vanished host does: nothing is forwarded, nothing is answered, nothing is reset.
  let upstream: Socket | undefined;
  let downstream: Socket | undefined;
  const proxy = createServer((client) => {
    downstream = client;
    upstream = connect(Number(port), host);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  t.after(() => {
    downstream?.destroy();
    upstream?.destroy();
    proxy.close();
  });
  const client = grpcClient(`127.0.0.1:${(proxy.address() as AddressInfo).port}`, 'Blobs', ADMIN_TOKEN);
  t.after(() => client.close());
  const call = client.open('DownloadBlob', { sha256 });
  call.on('error', () => {});
  let received = 0;
  await new Promise<void>((resolve) =>
    call.on('data', (chunk: { data: Buffer }) => {
      received += chunk.data.length;
      resolve();
    }),
  );
  // Freeze: the proxy stops moving bytes in either direction.
  upstream!.unpipe(downstream!);
  downstream!.unpipe(upstream!);
  upstream!.pause();
  downstream!.pause();
  await sleep(4000);
  const fromServer = await drainUntilEnd(upstream!, 5000);
  assert.notEqual(fromServer, null, 'the server closed the connection of the frozen client');
  assert.ok(received + fromServer! < BLOB_BYTES, 'the download did not go on into buffers');
});

test('a request the server itself takes longer than --idle-timeout to answer (a slow disk, a locked database) gets its answer', async (t) => {
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 1 } }))!;
  const { tokens } = server.server.ctx;
  const create = tokens.create.bind(tokens);
  tokens.create = async (...args: Parameters<typeof create>) => {
    await sleep(2500);
    return create(...args);
  };
  const created = await server.request('POST', '/api/tokens', { json: { role: 'viewer' } });
  assert.equal(created.status, 201, 'the answer arrives, 2.5 s later');
});

test('an event stream read by its client stays open between events, even with --idle-timeout below the 15 s keep-alive', async (t) => {
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 1 } }))!;
  // A job another server runs: the stream sends its state, then nothing but keep-alives.
  const now = new Date().toISOString();
  await server.server.ctx.store.jobs.insert({ id: 'job-elsewhere', kind: 'prune', state: 'running', request: {}, progress: null, result: null, error: null, createdAt: now, updatedAt: now, createdBy: 'token:test', node: 'another-node' });
  const controller = new AbortController();
  t.after(() => controller.abort());
  const response = await fetch(`${server.baseUrl}/api/jobs/job-elsewhere/events`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: controller.signal });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  let failure: unknown;
  const reading = (async () => {
    try {
      for (;;) if ((await reader.read()).done) return 'ended';
    } catch (error) {
      failure = error;
      return 'failed';
    }
  })();
  const outcome = await Promise.race([reading, sleep(3500).then(() => 'open')]);
  assert.equal(outcome, 'open', `the stream ${outcome} after less than 3.5 s (${String(failure)})`);
});

test('an idle keep-alive connection is kept 65 s, longer than a proxy keeps its own, and the Keep-Alive header says so (not node\'s 5 s)', async (t) => {
  for (const idleTimeoutSeconds of [60, 1]) {
    const server = (await startTestServer(t, { config: { idleTimeoutSeconds } }))!;
    const response = await server.request('GET', '/api/devices');
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('keep-alive'), 'timeout=65', `--idle-timeout ${idleTimeoutSeconds}`);
    await response.arrayBuffer();
  }
  // A connection idle for longer than node's default is still open: the next request on it is answered.
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 60 } }))!;
  const socket = connect(server.server.port('http'), '127.0.0.1');
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  let received = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
  const ask = async () => {
    received = '';
    socket.write(`GET /api/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`);
    for (let waited = 0; !/\r\n\r\n[\s\S]*\}$/.test(received) && waited < 10_000; waited += 50) await sleep(50);
    return received.split('\r\n')[0];
  };
  assert.equal(await ask(), 'HTTP/1.1 200 OK');
  await sleep(6000);
  assert.equal(socket.destroyed || socket.readyState !== 'open' ? 'closed' : 'open', 'open', 'kept past 5 s idle');
  assert.equal(await ask(), 'HTTP/1.1 200 OK', 'answered on the same connection');
});

// REST cut an upload that stopped sending after --idle-timeout; a gRPC one stayed open (its
// connection answering pings), holding its partial file and a descriptor for as long as it liked.
test('a gRPC upload that stops sending is ended after --idle-timeout with ABORTED, and its partial file removed; one that keeps sending is not', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 1 } }))!;
  const blobs = grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN);
  t.after(() => blobs.close());
  const tmp = join(server.dataDir, 'blobs', 'tmp');
  const whole = randomBytes(4096);
  const sha256 = createHash('sha256').update(whole).digest('hex');
  const started = Date.now();
  const answer = await new Promise<any>((resolve) => {
    const call = blobs.client.UploadBlob(blobs.metadata, (error: unknown, response: unknown) => resolve(error ?? response));
    call.write({ sha256, data: whole.subarray(0, 100) });
    // …and nothing more, the call left open.
  });
  assert.equal(answer?.code, status.ABORTED, `${answer?.code}: ${answer?.details}`);
  assert.equal(answer.details, "the upload sent nothing for 1 s (the server's --idle-timeout); nothing was stored: send it again");
  assert.ok(Date.now() - started < 10_000, 'ended after about a second');
  assert.deepEqual(await readdir(tmp), [], 'no partial file left');
  await assert.rejects(blobs.stream('DownloadBlob', { sha256 }), (error: any) => error.code === status.NOT_FOUND);

  // A slow upload that keeps sending, a message every 300 ms over 2.4 s, is stored.
  const stored = await new Promise<any>((resolve) => {
    const call = blobs.client.UploadBlob(blobs.metadata, (error: unknown, response: unknown) => resolve(error ?? response));
    void (async () => {
      for (let i = 0; i < 8; i++) {
        call.write({ sha256, data: whole.subarray(i * 512, (i + 1) * 512) });
        await sleep(300);
      }
      call.end();
    })();
  });
  assert.equal(stored?.sha256, sha256, `${stored?.code}: ${stored?.details}`);
});
