import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import express from 'express';
import { pino } from 'pino';
import type { BlobStore } from '../../server/artifacts/blob-store.ts';
import { sendBlob } from '../../server/http/blob-download.ts';
import { sendError } from '../../server/http/send-error.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { ADMIN_TOKEN, closeOnce, startTestServer, type TestServer } from './helpers/test-server.ts';

const LIMIT = 4096;

/** A raw HTTP/1.1 exchange: what the server has sent so far, and whether it closed the connection. */
function rawRequest(t: TestContext, server: TestServer, head: string): { socket: Socket; received: () => string; closed: Promise<void>; answered: Promise<string> } {
  const { port } = new URL(server.baseUrl);
  const socket = connect(Number(port), '127.0.0.1');
  let text = '';
  let answer: (value: string) => void;
  const answered = new Promise<string>((resolve) => (answer = resolve));
  socket.on('data', (chunk) => {
    text += chunk.toString('latin1');
    if (/\r\n\r\n/.test(text)) answer(text);
  });
  socket.on('error', () => {});
  deferCleanup(t, () => socket.destroy()); // before the server closes
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(head);
  return { socket, received: () => text, closed, answered };
}

function head(method: string, path: string, headers: Record<string, string>): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${ADMIN_TOKEN}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

test('a JSON body over --max-body-bytes is refused at once (413, connection closed), whether its length is declared or only sent', { timeout: 30_000 }, async (t) => {
  const server = (await startTestServer(t, { config: { maxBodyBytes: LIMIT } }))!;
  const tokensBefore = await (await server.request('GET', '/api/tokens')).json();

  // Declared far beyond the limit and never sent: the answer must not wait for the body.
  const declared = rawRequest(t, server, head('POST', '/api/tokens', { 'Content-Type': 'application/json', 'Content-Length': '1099511627776' }) + '{}');
  const declaredAnswer = await declared.answered;
  assert.match(declaredAnswer, /^HTTP\/1\.1 413 /);
  assert.match(declaredAnswer, /connection: close/i);
  await declared.closed;
  assert.match(declared.received(), /"code":"payload_too_large"/);
  assert.match(declared.received(), /larger than the 4096-byte limit \(--max-body-bytes\)/);

  // Chunked, with no declared length: refused once the bytes pass the limit, though the body never ends.
  const chunked = rawRequest(t, server, head('POST', '/api/tokens', { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }));
  const filler = `{"role":"viewer","label":"${'x'.repeat(LIMIT)}`;
  chunked.socket.write(`${filler.length.toString(16)}\r\n${filler}\r\n`);
  const chunkedAnswer = await chunked.answered; // no terminating chunk is ever sent
  assert.match(chunkedAnswer, /^HTTP\/1\.1 413 /);
  assert.match(chunkedAnswer, /connection: close/i);
  await chunked.closed;

  // Within the limit, a body still works, on a connection that stays open.
  const ok = await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'small' } });
  assert.equal(ok.status, 201);
  const tokensAfter = (await (await server.request('GET', '/api/tokens')).json()) as { tokens: unknown[] };
  assert.equal(tokensAfter.tokens.length, (tokensBefore as { tokens: unknown[] }).tokens.length + 1, 'only the good request made a token');
});

test('an upload under way when the server stops is logged as cut off by the shutdown, not as the client going away', { timeout: 30_000 }, async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = (await startTestServer(t, { start: { log } }))!;
  closeOnce(server.server);
  const upload = rawRequest(t, server, head('PUT', `/api/blobs/${'b'.repeat(64)}`, { 'Content-Type': 'application/octet-stream', 'Content-Length': '1000000' }) + 'x'.repeat(1000));
  // The server reads the body as it comes: wait until its handler holds the request.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await server.server.close();
  await upload.closed;
  // The handler's read fails as the connection closes, and is logged after.
  for (let waited = 0; waited < 5000 && !lines.some((line) => line.method === 'PUT'); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(lines.filter((line) => line.msg === 'the client went away before its request body was complete'), []);
  assert.ok(lines.some((line) => line.msg === 'the server shut down before the request body was complete'), JSON.stringify(lines.map((line) => line.msg)));
  assert.equal(lines.filter((line) => (line.level as number) >= 50).length, 0, 'no error-level line');
});

test('a client that drops its upload midway is logged as gone, not as a server failure with a stack', { timeout: 30_000 }, async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = (await startTestServer(t, { start: { log } }))!;
  const cases: [string, string, string][] = [
    ['PUT', `/api/blobs/${'a'.repeat(64)}`, 'application/octet-stream'],
    ['POST', '/api/rollouts', 'application/yaml'],
    ['POST', '/api/tokens', 'application/json'],
  ];
  for (const [method, path, type] of cases) {
    const upload = rawRequest(t, server, head(method, path, { 'Content-Type': type, 'Content-Length': '100' }) + 'abcd');
    await new Promise((resolve) => setTimeout(resolve, 100));
    upload.socket.destroy();
    await upload.closed;
  }
  // The server notices each disconnect; give it until /healthz answers after all of them.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal((await server.request('GET', '/healthz', { token: null })).status, 200);
  const failures = lines.filter((line) => (line.level as number) >= 50);
  assert.deepEqual(failures, [], 'no error-level line');
  assert.ok(!JSON.stringify(lines).includes('    at '), 'no stack trace in the log');
  const gone = lines.filter((line) => line.msg === 'the client went away before its request body was complete');
  assert.ok(gone.length >= 2, `the aborted uploads are logged as the client going away (${gone.length})`);
  assert.equal(((await (await server.request('GET', '/api/rollouts')).json()) as { total: number }).total, 0);
});

/** Waits (up to 10 s) for a log line that `match` accepts; undefined if none came. */
async function waitForLine(lines: Record<string, unknown>[], match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const found = lines.find(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

test('a client that aborts a download midway is logged at info as a closed connection, not as a server failure with a stack; the bytes served count only what was sent', { timeout: 30_000 }, async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = (await startTestServer(t, { start: { log } }))!;
  // Far more than the socket buffers hold: the server is still sending when the client goes.
  const size = 32 * 1024 * 1024;
  const blob = Buffer.alloc(size, 7);
  const sha256 = createHash('sha256').update(blob).digest('hex');
  const put = await server.request('PUT', `/api/blobs/${sha256}`, { body: blob, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201, await put.text());

  // The headers and the first bytes arrive; then the client closes the connection (an agent
  // cancelling a download for a newer assignment, a timeout, a stop).
  const download = rawRequest(t, server, head('GET', `/api/blobs/${sha256}`, {}));
  assert.match(await download.answered, /^HTTP\/1\.1 200 /);
  download.socket.destroy();
  await download.closed;

  const seen = await waitForLine(lines, (line) => (line.level as number) >= 50 || line.msg === 'the connection closed before the response was complete');
  const failures = lines.filter((line) => (line.level as number) >= 40);
  assert.deepEqual(failures, [], 'no warning or error line for a download the client aborted');
  assert.ok(seen, 'the aborted download is logged');
  assert.equal(seen.level, 30, 'at info');
  assert.equal(seen.path, `/blobs/${sha256}`);
  assert.match(String(seen.reason), new RegExp(`^the connection closed after \\d+ of ${size} bytes$`));
  assert.ok(!JSON.stringify(lines).includes('    at '), 'no stack trace in the log');

  const metrics = await (await server.request('GET', '/metrics')).text();
  const served = Number(metrics.split('\n').find((line) => line.startsWith('fleetprune_blob_bytes_served_total{transport="http"}'))?.split(' ').at(-1) ?? 0);
  assert.ok(served > 0 && served < size, `the bytes served count what was sent before the abort, not the whole blob (${served} of ${size})`);
  assert.equal((await server.request('GET', '/healthz', { token: null })).status, 200);
});

test('a blob that fails to read in the middle of its download is still logged as a server failure, and the download is cut off', { timeout: 30_000 }, async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const size = 4 * 1024 * 1024;
  // A blob store whose disk fails (EIO) after the first 2 MiB of the blob, as a failing disk does
  // (the first MiB is sent: the last piece read is held back until the whole blob's hash is known).
  const failingRead = () =>
    Readable.from(
      (async function* () {
        yield Buffer.alloc(1024 * 1024, 1);
        yield Buffer.alloc(1024 * 1024, 1);
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      })(),
    );
  const failingDisk = {
    openForRead: async () => ({ bytes: size, stream: failingRead, close: async () => {} }),
  } as unknown as BlobStore;
  const app = express();
  app.get('/blobs/:sha256', (req, res) => {
    sendBlob(req, res, failingDisk, req.params.sha256).catch((error: unknown) => sendError(res, error, log));
  });
  const listener = app.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => new Promise((resolve) => listener.close(resolve)));

  const response = await fetch(`http://127.0.0.1:${(listener.address() as AddressInfo).port}/blobs/${'b'.repeat(64)}`);
  assert.equal(response.status, 200);
  await assert.rejects(response.arrayBuffer(), 'the body is cut off, not ended as if it were complete');
  const failure = await waitForLine(lines, (line) => (line.level as number) >= 50);
  assert.ok(failure, 'the read failure is logged at error level');
  assert.equal(failure.msg, 'request failed after the response started');
  assert.match(JSON.stringify(failure.err), /EIO: i\/o error, read/);
  assert.deepEqual(lines.filter((line) => line.msg === 'the connection closed before the response was complete'), [], 'not taken for the client going away');
});

test('a JSON body that gives a key twice is refused, naming it, and changes nothing', { timeout: 30_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const enroll = await server.request('POST', '/api/devices', { body: '{"id":"first-id","id":"second-id"}', headers: { 'content-type': 'application/json' } });
  assert.equal(enroll.status, 400);
  assert.equal(((await enroll.json()) as { error: { message: string } }).error.message, 'body.id: given twice; send each field once');
  const nested = await server.request('POST', '/api/tokens', { body: '{"role":"viewer","label":"a","label":"b"}', headers: { 'content-type': 'application/json' } });
  assert.equal(nested.status, 400);
  assert.match(((await nested.json()) as { error: { message: string } }).error.message, /^body\.label: given twice/);
  // Whatever its last value is: what that value lacked was said instead ("body.id: must be ...").
  const badLast = await server.request('POST', '/api/devices', { body: '{"id":"first-id","id":""}', headers: { 'content-type': 'application/json' } });
  assert.equal(((await badLast.json()) as { error: { message: string } }).error.message, 'body.id: given twice; send each field once');
  const devices = (await (await server.request('GET', '/api/devices')).json()) as { devices: unknown[] };
  assert.equal(devices.devices.length, 0);
  // A field not sent at all is called required, not "expected string, received undefined".
  const missing = await server.request('POST', '/api/devices', { json: {} });
  assert.equal(missing.status, 400);
  assert.equal(((await missing.json()) as { error: { message: string } }).error.message, 'body.id: required (string)');
  // JSON that is not an object is told what shape is wanted, not called malformed JSON.
  for (const scalar of ['null', '42', '"x"', 'true', '[]']) {
    const response = await server.request('POST', '/api/devices', { body: scalar, headers: { 'content-type': 'application/json' } });
    assert.equal(response.status, 400, scalar);
    assert.match(((await response.json()) as { error: { message: string } }).error.message, /^body: must be an object, not (null|a number|a string|a boolean|a list)$/, scalar);
  }
  // The same body without the duplicate is accepted.
  assert.equal((await server.request('POST', '/api/devices', { json: { id: 'second-id' } })).status, 201);
});

test('numeric query parameters that are not one whole number in range say what was wrong with what was sent', { timeout: 30_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const message = async (path: string) => {
    const response = await server.request('GET', path);
    assert.equal(response.status, 400, path);
    return ((await response.json()) as { error: { message: string } }).error.message;
  };
  assert.equal(await message('/api/models/iris/versions?limit=abc'), 'query.limit: must be a whole number from 1 to 1000, not "abc"');
  assert.equal(await message('/api/devices?limit=1&limit=2'), 'query.limit: given more than once; send it once');
  // Text parameters too, not zod's "expected string, received array"; an unknown one repeated is unknown.
  assert.equal(await message('/api/rollouts?model=a&model=b'), 'query.model: given more than once; send it once');
  assert.equal(await message('/api/rollouts?colour=a&colour=b'), 'query.colour: unknown field');
  // Percent-escapes that are no UTF-8 text (a Latin-1 byte, an encoded surrogate, a cut sequence) were read as U+FFFD.
  for (const bad of ['%FF', '%ED%A0%80', 'ok%C3']) {
    assert.equal(await message(`/api/rollouts?model=${bad}`), 'query.model: its percent-escapes are not UTF-8 text; encode the value as UTF-8 (encodeURIComponent does)', bad);
  }
  // A model filter the registry could never hold is refused, not answered with an empty list.
  assert.equal(await message('/api/rollouts?model=..%2Fwine'), 'query.model: must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with a dot');
  assert.equal(await message('/api/audit?before=99999999999999999999999'), 'query.before: must be at most 9007199254740991');
  assert.equal(await message('/api/jobs?offset=x'), 'query.offset: must be a whole number from 0 to 1000000000, not "x"');
  assert.equal(await message('/api/models/iris/versions?limit=99999999999999999999999'), 'query.limit: must be a whole number from 1 to 1000');
  assert.equal(await message('/api/audit?limit=0'), 'query.limit: must be a whole number from 1 to 1000');
  assert.equal(await message('/api/audit?before=-1'), 'query.before: must be a whole number, 1 or more, not "-1"');
  assert.equal(await message('/api/rollouts?limit=1.5'), 'query.limit: must be a whole number from 1 to 1000, not "1.5"');
  // Good values still page.
  assert.equal((await server.request('GET', '/api/devices?limit=5')).status, 200);
  assert.equal((await server.request('GET', '/api/jobs?limit=2&offset=0')).status, 200);
});
