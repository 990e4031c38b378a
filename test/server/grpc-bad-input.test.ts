import assert from 'node:assert/strict';
import { credentials, makeGenericClientConstructor, Metadata, status } from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { STORE_ENGINES } from './helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** Out-of-range numbers in gRPC requests are INVALID_ARGUMENT naming the field, on both engines (PostgreSQL rejects LIMIT -1 itself). */
for (const engine of STORE_ENGINES) {
  describe(`gRPC numeric arguments on ${engine}`, () => {
    test('negative or too large limits and cursors are refused with the field named', async (t) => {
      const server = await startTestServer(t, { engine });
      if (!server) return;
      const audit = grpcClient(server.grpcAddress, 'Audit', ADMIN_TOKEN);
      const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      const tokens = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
      t.after(() => [audit, models, tokens].forEach((client) => client.close()));
      await server.request('POST', '/api/tokens', { json: { role: 'viewer' } }); // one audit entry
      const refused = (field: string) => (error: any) => error.code === status.INVALID_ARGUMENT && error.details.startsWith(`${field}: `);
      await assert.rejects(audit.call('ListAudit', { limit: -1 }), refused('limit'));
      await assert.rejects(audit.call('ListAudit', { limit: 1001 }), (error: { details: string }) => error.details === 'limit: must be a whole number from 1 to 1000, or 0 (unset) for 100');
      await assert.rejects(audit.call('ListAudit', { limit: 5000 }), refused('limit'));
      await assert.rejects(audit.call('ListAudit', { before: '-3' }), refused('before'));
      // One bound, the one that matters, for the int64 extremes too.
      await assert.rejects(audit.call('ListAudit', { before: '-9223372036854775808' }), (error: any) => (assert.equal(error.details, 'before: must be at least 0'), true));
      await assert.rejects(models.call('ListVersions', { name: 'iris', limit: -1 }), (error: { details: string }) => error.details === 'limit: must be a whole number from 1 to 1000, or 0 (unset) for 100');
      // The same cursor rule as REST's ?after=.
      const rest = await server.request('GET', '/api/models/iris/versions?after=-5');
      assert.equal(rest.status, 400);
      assert.match(((await rest.json()) as any).error.message, /^query\.after: /);
      await assert.rejects(models.call('ListVersions', { name: 'iris', after_seq: -5 }), refused('after_seq'));
      const entries = (await audit.call('ListAudit', {})).entries;
      assert.equal(entries.length, 1);
      assert.equal(entries[0].action, 'token.create');
      assert.deepEqual((await audit.call('ListAudit', { before: entries[0].id })).entries, []);

      // Token labels: REST's limit (at most 200 characters), '' is absent; nothing is stored.
      const long = 'x'.repeat(201);
      const tokenCount = (await tokens.call('ListTokens', {})).tokens.length;
      const restLong = await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: long } });
      assert.equal(restLong.status, 400);
      assert.match(((await restLong.json()) as any).error.message, /^body\.label: /);
      await assert.rejects(tokens.call('CreateToken', { role: 'viewer', label: long }), refused('label'));
      assert.equal((await tokens.call('ListTokens', {})).tokens.length, tokenCount, 'no token was stored');
      assert.equal((await tokens.call('CreateToken', { role: 'viewer', label: '' })).record.label, 'viewer token');
    });
  });
}

test('gRPC refusals that quote what was sent stay sendable: half an emoji in malformed JSON, a 200,000-character sha256', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  const blobs = grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN);
  t.after(() => [models, blobs].forEach((client) => client.close()));
  // JSON.parse's message quotes the one code unit it stopped at: here the first half of a surrogate pair.
  for (const method of ['CheckPush', 'PushVersion']) {
    await assert.rejects(models.call(method, { name: 'iris', manifest_json: '🦄' }), (error: any) => {
      assert.equal(error.code, status.INVALID_ARGUMENT, `${method}: ${error.details}`);
      assert.match(error.details, /^manifest_json: malformed JSON \(Unexpected token .\uFFFD./);
      assert.equal(error.details, error.details.toWellFormed(), 'no lone surrogate');
      return true;
    });
    // Not sent at all: named by the proto's field (it read "manifest: required (object)").
    await assert.rejects(models.call(method, { name: 'iris', manifest_json: '' }), (error: any) => error.code === status.INVALID_ARGUMENT && error.details === 'manifest_json: required (the signed manifest.json, as JSON text)');
  }
  // A refusal quoting a huge input is cut, so its status fits the status header and the call ends.
  const upload = await new Promise<any>((resolve) => {
    const call = blobs.client.UploadBlob(blobs.metadata, { deadline: Date.now() + 20_000 }, (error: unknown) => resolve(error));
    call.write({ sha256: 'x'.repeat(200_000) });
    call.end();
  });
  assert.equal(upload?.code, status.INVALID_ARGUMENT, String(upload?.details).slice(0, 200));
  assert.equal(upload.details, 'sha256: must be 64 lowercase hex digits', 'the field named, as DownloadBlob names it');
  assert.ok(upload.details.length < 300, `details of ${upload.details.length} characters`);
  // The server is still up and the channel still works.
  assert.equal((await server.request('GET', '/healthz', { token: null })).status, 200);
  assert.deepEqual((await models.call('ListModels', {})).models, []);
});

test('gRPC uploads and downloads the client cancels midway end as cancelled, not as server failures in the log', { timeout: 60_000 }, async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = (await startTestServer(t, { start: { log } }))!;
  const blobs = grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN);
  t.after(() => blobs.close());
  const bytes = randomBytes(4 * 1024 * 1024);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  // An upload cancelled after its first chunks.
  const upload = await new Promise<any>((resolve) => {
    const call = blobs.client.UploadBlob(blobs.metadata, (error: unknown) => resolve(error));
    call.write({ sha256, data: bytes.subarray(0, 64 * 1024) });
    setTimeout(() => call.cancel(), 200);
  });
  assert.equal(upload?.code, status.CANCELLED);

  // The whole blob uploaded, then a download cancelled after its first message.
  await new Promise<void>((resolve, reject) => {
    const call = blobs.client.UploadBlob(blobs.metadata, (error: unknown) => (error ? reject(error) : resolve()));
    call.write({ sha256, data: bytes });
    call.end();
  });
  await new Promise<void>((resolve) => {
    const call = blobs.open('DownloadBlob', { sha256, chunk_size: 16 * 1024 });
    call.once('data', () => call.cancel());
    call.on('error', () => resolve());
    call.on('end', () => resolve());
  });
  await new Promise((resolve) => setTimeout(resolve, 500)); // the server sees each cancel
  assert.deepEqual(lines.filter((line) => (line.level as number) >= 50), [], 'no error-level line');
  assert.equal((await server.request('GET', '/healthz', { token: null })).status, 200);
});

/** grpc-js answered these UNIMPLEMENTED, "… for server streaming method …" even for a unary one: as if the method did not exist. */
test('a unary or server-streaming gRPC call sent no request message, or two, is INVALID_ARGUMENT, not UNIMPLEMENTED', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const raw = (bytes: Buffer) => bytes;
  const streamed = (path: string, responseStream: boolean) => ({ path, requestStream: true, responseStream, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw });
  // Declared here as taking a stream of requests, so that this client can send none, or two.
  const Client = makeGenericClientConstructor({ ListModels: streamed('/fleetprune.v1.ModelRegistry/ListModels', false), ListTokens: streamed('/fleetprune.v1.Tokens/ListTokens', false), WatchJob: streamed('/fleetprune.v1.Jobs/WatchJob', true) }, 'Misdeclared');
  const client = new Client(server.grpcAddress, credentials.createInsecure()) as any;
  t.after(() => client.close());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  const send = (method: string, messages: number) =>
    new Promise<any>((resolve) => {
      const call = method === 'WatchJob' ? client.WatchJob(metadata) : client[method](metadata, (error: unknown) => resolve(error));
      if (method === 'WatchJob') {
        call.on('error', resolve);
        call.on('data', () => {});
        call.on('end', () => resolve(null));
      }
      for (let i = 0; i < messages; i++) call.write(Buffer.alloc(0));
      call.end();
    });
  for (const method of ['ListModels', 'WatchJob']) {
    const none = await send(method, 0);
    assert.equal(none?.code, status.INVALID_ARGUMENT, `${method}, no message: ${none?.code} ${none?.details}`);
    assert.equal(none.details, 'request: the call ended without its request message (this method takes exactly one)');
  }
  const two = await send('ListTokens', 2);
  assert.equal(two?.code, status.INVALID_ARGUMENT, `two messages: ${two?.code} ${two?.details}`);
  assert.equal(two.details, 'request: the call sent a second request message (this method takes exactly one)');
  // A method that does not exist is still UNIMPLEMENTED.
  const Unknown = makeGenericClientConstructor({ Nope: { ...streamed('/fleetprune.v1.Tokens/Nope', false), requestStream: false } }, 'Unknown');
  const unknown = new Unknown(server.grpcAddress, credentials.createInsecure()) as any;
  t.after(() => unknown.close());
  const missing = await new Promise<any>((resolve) => unknown.Nope(Buffer.alloc(0), metadata, (error: unknown) => resolve(error)));
  assert.equal(missing?.code, status.UNIMPLEMENTED);
});

test('gRPC messages that do not decode are INVALID_ARGUMENT naming the message type (unary, server and client streams), not INTERNAL', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const raw = (bytes: Buffer) => bytes;
  const Client = makeGenericClientConstructor(
    {
      ListVersions: { path: '/fleetprune.v1.ModelRegistry/ListVersions', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
      DownloadBlob: { path: '/fleetprune.v1.Blobs/DownloadBlob', requestStream: false, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
      UploadBlob: { path: '/fleetprune.v1.Blobs/UploadBlob', requestStream: true, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
    },
    'Raw',
  );
  const client = new Client(server.grpcAddress, credentials.createInsecure()) as any;
  t.after(() => client.close());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  const junk = Buffer.from([0xff, 0xff, 0xff]);
  const refusedAs = (type: string) => (error: any) => {
    assert.equal(error?.code, status.INVALID_ARGUMENT, `${error?.code} ${error?.details}`);
    assert.equal(error.details, `request: not a valid fleetprune.v1.${type} message (its bytes end inside a field, or are not this message's encoding)`);
    return true;
  };
  const unary = await new Promise<any>((resolve) => client.ListVersions(junk, metadata, (error: unknown) => resolve(error)));
  refusedAs('ListVersionsRequest')(unary);
  const stream = await new Promise<any>((resolve) => {
    const call = client.DownloadBlob(junk, metadata);
    call.on('error', resolve);
    call.on('data', () => {});
    call.on('end', () => resolve(null));
  });
  refusedAs('DownloadBlobRequest')(stream);
  const upload = await new Promise<any>((resolve) => {
    const call = client.UploadBlob(metadata, (error: unknown) => resolve(error));
    call.write(junk);
    call.end();
  });
  refusedAs('UploadBlobChunk')(upload);
  // Well-formed calls on the same server still work.
  const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  t.after(() => models.close());
  assert.deepEqual((await models.call('ListModels', {})).models, []);
});
