import assert from 'node:assert/strict';
import { credentials, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { connect } from 'node:http2';
import { test, type TestContext } from 'node:test';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { MISSING_GRPC_TOKEN } from '../../server/grpc/grpc-auth-interceptor.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const MiB = 1024 * 1024;
const START_PRUNE = '/fleetprune.v1.Jobs/StartPrune';

type Answer = { status: number; message: string } | 'no answer';

/**
 * A raw HTTP/2 gRPC call that announces a `announced`-byte message, sends only its first
 * `sent` bytes and never finishes it: the server's status if it answers within `ms`.
 * A server that reads the message before checking the token cannot answer such a call.
 */
async function partialCall(t: TestContext, address: string, token: string | null, sizes: { announced: number; sent: number }, ms: number): Promise<Answer> {
  const session = connect(`http://${address}`);
  t.after(() => session.destroy());
  session.on('error', () => {});
  const request = session.request({
    ':method': 'POST',
    ':path': START_PRUNE,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...(token === null ? {} : { authorization: `Bearer ${token}` }),
  });
  request.on('error', () => {});
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(sizes.announced, 1);
  request.write(prefix);
  request.write(Buffer.alloc(sizes.sent, 0x0a));
  const answer = new Promise<Answer>((resolve) => {
    const settle = (headers: Record<string, unknown>) => {
      if (headers['grpc-status'] !== undefined) resolve({ status: Number(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'] ?? '')) });
    };
    request.on('response', settle);
    request.on('trailers', settle);
    setTimeout(() => resolve('no answer'), ms).unref();
  });
  try {
    return await answer;
  } finally {
    request.close();
  }
}

test('gRPC: a call without a valid token, or with too weak a role, is refused before its message is read', async (t) => {
  const server = (await startTestServer(t))!;
  const viewer = ((await (await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).json()) as { token: string }).token;
  const sizes = { announced: 15 * MiB, sent: 64 * 1024 };

  // The message is never complete, so only a server that answers from the metadata answers at all.
  assert.deepEqual(await partialCall(t, server.grpcAddress, null, sizes, 5000), {
    status: status.UNAUTHENTICATED,
    message: MISSING_GRPC_TOKEN,
  });
  assert.deepEqual(await partialCall(t, server.grpcAddress, 'fp_not-a-token', sizes, 5000), { status: status.UNAUTHENTICATED, message: 'unknown or revoked token' });
  assert.deepEqual(await partialCall(t, server.grpcAddress, viewer, sizes, 5000), {
    status: status.PERMISSION_DENIED,
    message: 'role viewer may not do this (needs operator or admin)',
  });
  // A caller allowed to start jobs is let in: the server now waits for the rest of the message.
  assert.equal(await partialCall(t, server.grpcAddress, ADMIN_TOKEN, sizes, 1000), 'no answer');

  // The refusals are counted under the method, as the calls that reach their handler are.
  const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
  assert.match(metrics, /fleetprune_grpc_request_duration_seconds_count\{method="Jobs\/StartPrune",code="UNAUTHENTICATED"\} 2/);
  assert.match(metrics, /fleetprune_grpc_request_duration_seconds_count\{method="Jobs\/StartPrune",code="PERMISSION_DENIED"\} 1/);
});

/**
 * grpc-js drops an authorization value holding a tab or a non-breaking space (pasted after a
 * token) before the server sees it, and logged it whole: the caller's valid token went into the
 * server's log, and the refusal said only that no token was sent.
 */
test('gRPC: a token header grpc-js drops (a tab, a pasted non-breaking space) is refused saying why, and the token is never logged', async (t) => {
  const { logger, lines } = recordingLogger();
  const server = (await startTestServer(t, { start: { log: logger } }))!;
  const sizes = { announced: 1024, sent: 16 };
  for (const token of [`${ADMIN_TOKEN}\u00a0`, `\t${ADMIN_TOKEN}`]) {
    assert.deepEqual(await partialCall(t, server.grpcAddress, token, sizes, 5000), { status: status.UNAUTHENTICATED, message: MISSING_GRPC_TOKEN }, JSON.stringify(token));
  }
  // Node's HTTP/2 drops a value that ends with a space (a space is printable ASCII: the message named only tabs and others).
  assert.deepEqual(await partialCall(t, server.grpcAddress, `${ADMIN_TOKEN} `, sizes, 5000), { status: status.UNAUTHENTICATED, message: MISSING_GRPC_TOKEN }, 'a trailing space');
  assert.match(MISSING_GRPC_TOKEN, /starts or ends with a space/);
  const logged = lines.map((line) => JSON.stringify(line));
  assert.equal(logged.filter((line) => line.includes('dropped the request metadata entry \\"authorization\\"')).length, 2, logged.join('\n'));
  assert.deepEqual(logged.filter((line) => line.includes(ADMIN_TOKEN)), [], 'no line holds the token');
});

test('gRPC: a refused call\'s message, sent whole, is never decoded', async (t) => {
  const startPrune = loadFleetpruneProto().Jobs.service.StartPrune! as { requestDeserialize: (bytes: Buffer) => unknown };
  const original = startPrune.requestDeserialize;
  let decoded = 0;
  startPrune.requestDeserialize = (bytes) => ((decoded += 1), original(bytes));
  t.after(() => void (startPrune.requestDeserialize = original));
  const server = (await startTestServer(t))!;
  const viewer = ((await (await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).json()) as { token: string }).token;

  const client = new (loadFleetpruneProto().Jobs)(server.grpcAddress, credentials.createInsecure()) as Client & Record<string, Function>;
  t.after(() => client.close());
  const call = (token: string | null, request: object) => {
    const metadata = new Metadata();
    if (token !== null) metadata.set('authorization', `Bearer ${token}`);
    return new Promise<number>((resolve) => client.StartPrune!.call(client, request, metadata, (error: ServiceError | null) => resolve(error?.code ?? status.OK)));
  };
  const big = { name: 'big', label: 'y', csv: 'y\n'.repeat(2 * MiB) };
  assert.equal(await call(null, big), status.UNAUTHENTICATED);
  assert.equal(await call('fp_not-a-token', big), status.UNAUTHENTICATED);
  assert.equal(await call(viewer, big), status.PERMISSION_DENIED);
  assert.equal(decoded, 0, 'no refused message was decoded');
  // An admin's call is decoded (and then refused for its content).
  assert.equal(await call(ADMIN_TOKEN, { name: '../bad', label: 'y', csv: 'y\n1\n' }), status.INVALID_ARGUMENT);
  assert.equal(decoded, 1);
});

test('gRPC: an upload under way stops when its token is revoked', async (t) => {
  const server = (await startTestServer(t))!;
  const created = (await (await server.request('POST', '/api/tokens', { json: { role: 'operator' } })).json()) as { token: string; record: { id: string } };
  const client = new (loadFleetpruneProto().Blobs)(server.grpcAddress, credentials.createInsecure()) as Client & Record<string, Function>;
  t.after(() => client.close());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${created.token}`);
  let upload: import('@grpc/grpc-js').ClientWritableStream<unknown>;
  const ended = new Promise<number>((resolve) => {
    upload = client.UploadBlob!.call(client, metadata, (error: ServiceError | null) => resolve(error?.code ?? status.OK));
  });
  upload!.write({ sha256: 'a'.repeat(64), data: Buffer.alloc(1024) });
  // The upload is open (its handler waits for more data) once the server watches its token.
  for (let i = 0; i < 100 && server.server.ctx.tokens.revocations.watching === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal((await server.request('DELETE', `/api/tokens/${created.record.id}`)).status, 204);
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still open after 3 s'), 3000).unref());
  assert.equal(await Promise.race([ended, timeout]), status.UNAUTHENTICATED);
  assert.equal(server.server.ctx.tokens.revocations.watching, 0, 'nothing left watching');
  // The call-duration metric records the cut as the client saw it, not as an internal error of the handler.
  // (The handler records it when its reading of the cut stream fails, a moment after the client's status.)
  let uploads: string[] = [];
  for (let i = 0; i < 100 && uploads.length === 0; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    const metrics = await (await fetch(`${server.baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    uploads = metrics.split('\n').filter((line) => line.startsWith('fleetprune_grpc_request_duration_seconds_count{') && line.includes('method="Blobs/UploadBlob"'));
  }
  assert.deepEqual(uploads.map((line) => /code="(\w+)"/.exec(line)![1]), ['UNAUTHENTICATED'], uploads.join('\n'));
});

test('gRPC: one connection may have at most 100 calls open at once (a client queues the rest)', async (t) => {
  const server = (await startTestServer(t))!;
  const session = connect(`http://${server.grpcAddress}`);
  t.after(() => session.destroy());
  await new Promise<void>((resolve, reject) => session.once('remoteSettings', () => resolve()).once('error', reject));
  assert.equal(session.remoteSettings.maxConcurrentStreams, 100);
});

test('gRPC: calls that end normally (an upload, then a download streamed to its end) leave no token watch behind', async (t) => {
  const server = (await startTestServer(t))!;
  const client = new (loadFleetpruneProto().Blobs)(server.grpcAddress, credentials.createInsecure()) as Client & Record<string, Function>;
  t.after(() => client.close());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  const data = Buffer.from('a blob that is uploaded and downloaded again\n');
  const sha256 = (await import('node:crypto')).createHash('sha256').update(data).digest('hex');
  await new Promise<void>((resolve, reject) => {
    const upload = client.UploadBlob!.call(client, metadata, (error: ServiceError | null) => (error ? reject(error) : resolve()));
    upload.write({ sha256, data });
    upload.end();
  });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const download = client.DownloadBlob!.call(client, { sha256 }, metadata);
    download.on('data', (chunk: { data: Buffer }) => chunks.push(chunk.data));
    download.on('error', reject);
    download.on('end', resolve);
  });
  assert.deepEqual(Buffer.concat(chunks), data);
  // The server-side end of the call may trail the client's by a moment.
  for (let i = 0; i < 50 && server.server.ctx.tokens.revocations.watching > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(server.server.ctx.tokens.revocations.watching, 0, 'a finished call still watches its token (and keeps the revocation poll running)');
});
