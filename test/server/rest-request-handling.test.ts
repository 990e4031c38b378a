import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { test } from 'node:test';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';
import { expectError, type ErrorBody } from './helpers/api-errors.ts';

async function tokenCount(server: TestServer): Promise<number> {
  return ((await (await server.request('GET', '/api/tokens')).json()) as { tokens: unknown[] }).tokens.length;
}

test('a JSON body in UTF-16 is refused (415) rather than let past the duplicate-key check, and makes no token', async (t) => {
  const server = (await startTestServer(t))!;
  const before = await tokenCount(server);
  // In UTF-8 the duplicate "role" is refused; sent as UTF-16 the check read the bytes as UTF-8,
  // found no key at all, and JSON.parse kept the last value: an admin token was made.
  const duplicate = '{"role":"viewer","role":"admin"}';
  for (const [charset, bytes] of [
    ['utf-16', Buffer.from(`\ufeff${duplicate}`, 'utf16le')],
    ['utf-16le', Buffer.from(duplicate, 'utf16le')],
  ] as const) {
    const response = await server.request('POST', '/api/tokens', { body: bytes, headers: { 'content-type': `application/json; charset=${charset}` } });
    await expectError(response, 415, 'unsupported_media_type', new RegExp(`^body: unsupported charset "${charset.toUpperCase()}"`));
  }
  assert.equal(await tokenCount(server), before, 'no token was made');
  // UTF-8, said or not, still works.
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer' }, headers: { 'content-type': 'application/json; charset=UTF-8' } })).status, 201);
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).status, 201);
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer' }, headers: { 'content-type': 'application/json; charset=' } })).status, 201);
  // As the rollout spec route takes them: utf8 and US-ASCII read as UTF-8 (the duplicate check too); Latin-1 does not.
  for (const charset of ['utf8', 'US-ASCII']) {
    const headers = { 'content-type': `application/json; charset=${charset}` };
    assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer' }, headers })).status, 201, charset);
    await expectError(await server.request('POST', '/api/tokens', { body: Buffer.from(duplicate), headers }), 400, 'bad_request', /role/);
  }
  const latin1 = await server.request('POST', '/api/tokens', { json: { role: 'viewer' }, headers: { 'content-type': 'application/json; charset=ISO-8859-1' } });
  await expectError(latin1, 415, 'unsupported_media_type', /^body: unsupported charset "ISO-8859-1"/);
  assert.equal(await tokenCount(server), before + 5);
});

test('a token that revokes itself gets its 204, not a connection cut before any answer', async (t) => {
  const server = (await startTestServer(t))!;
  const created = (await (await server.request('POST', '/api/tokens', { json: { role: 'admin', label: 'leaving' } })).json()) as { token: string; record: { id: string } };
  const response = await server.request('DELETE', `/api/tokens/${created.record.id}`, { token: created.token });
  assert.equal(response.status, 204);
  await expectError(await server.request('GET', '/api/whoami', { token: created.token }), 401, 'unauthenticated', /unknown or revoked token/);
  const tokens = ((await (await server.request('GET', '/api/tokens')).json()) as { tokens: { id: string; revokedAt: string | null }[] }).tokens;
  assert.ok(tokens.find((token) => token.id === created.record.id)?.revokedAt, 'the token is revoked');
});

test('a blob download with a weak If-None-Match of its ETag is 304 (weak comparison, RFC 9110 §13.1.2)', async (t) => {
  const server = (await startTestServer(t))!;
  const { sha256 } = await server.server.ctx.blobs.put(
    (async function* () {
      yield Buffer.from('hello blob');
    })(),
    null,
    10,
  );
  const path = `/api/blobs/${sha256}`;
  for (const tag of [`W/"${sha256}"`, `"other", W/"${sha256}"`]) {
    const response = await server.request('GET', path, { headers: { 'if-none-match': tag } });
    assert.equal(response.status, 304, `If-None-Match: ${tag}`);
    assert.equal(response.headers.get('etag'), `"${sha256}"`);
  }
  const other = await server.request('GET', path, { headers: { 'if-none-match': 'W/"other"' } });
  assert.equal(other.status, 200);
  assert.equal(await other.text(), 'hello blob');
  // If-Range still compares strongly: a weak validator gets the whole blob, not a range.
  const range = await server.request('GET', path, { headers: { range: 'bytes=0-1', 'if-range': `W/"${sha256}"` } });
  assert.equal(range.status, 200);
  assert.equal(await range.text(), 'hello blob');
});

test('a rollout spec that is compressed or in a charset other than UTF-8 is refused (415), not misread', async (t) => {
  const server = (await startTestServer(t))!;
  const gzipped = await server.request('POST', '/api/rollouts', { body: gzipSync('model: iris\n'), headers: { 'content-type': 'application/yaml', 'content-encoding': 'gzip' } });
  await expectError(gzipped, 415, 'unsupported_media_type', /^body: unsupported content encoding "gzip"/);
  const latin1 = await server.request('POST', '/api/rollouts', { body: Buffer.from('model: caf\xe9\n', 'latin1'), headers: { 'content-type': 'application/yaml; charset=iso-8859-1' } });
  await expectError(latin1, 415, 'unsupported_media_type', /^body: unsupported charset "ISO-8859-1"/);
  const utf16 = await server.request('POST', '/api/rollouts', { body: Buffer.from('{"model":"iris"}', 'utf16le'), headers: { 'content-type': 'application/json; charset=utf-16le' } });
  await expectError(utf16, 415, 'unsupported_media_type', /^body: unsupported charset "UTF-16LE"/);
  // UTF-8 (said or not) is read as before: the spec itself is judged.
  for (const type of ['application/yaml', 'application/yaml; charset=utf-8', 'text/plain;charset=UTF-8']) {
    const plain = await server.request('POST', '/api/rollouts', { body: 'model: iris\n', headers: { 'content-type': type } });
    await expectError(plain, 400, 'bad_request', /^body: invalid rollout spec: /);
  }
  assert.equal(((await (await server.request('GET', '/api/rollouts')).json()) as { total: number }).total, 0);
});

test('a 401 says how to authenticate: WWW-Authenticate: Bearer', async (t) => {
  const server = (await startTestServer(t))!;
  for (const authorization of [null, 'Basic abc', 'Bearer fp_wrong']) {
    const response = await server.request('GET', '/api/devices', { token: null, headers: authorization === null ? {} : { authorization } });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer', String(authorization));
    assert.equal(((await response.json()) as ErrorBody).error.code, 'unauthenticated');
  }
  // Other refusals do not carry it.
  const viewer = (await (await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).json()) as { token: string };
  const forbidden = await server.request('GET', '/api/tokens', { token: viewer.token });
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.headers.get('www-authenticate'), null);
  await forbidden.arrayBuffer();
});

test('a rollout spec over the 1 MiB spec limit is 413 at once, not read whole (up to --max-body-bytes) and called a bad request', async (t) => {
  const server = (await startTestServer(t))!; // --max-body-bytes: 16 MiB by default
  const big = `model: ${'w'.repeat(2 * 1024 * 1024)}\n`;
  const response = await server.request('POST', '/api/rollouts', { body: big, headers: { 'content-type': 'application/yaml' } });
  await expectError(response, 413, 'payload_too_large', /^body: larger than 1048576 bytes, the most a rollout spec may be$/);
  // Under a smaller --max-body-bytes, that limit is the one named.
  const small = (await startTestServer(t, { config: { maxBodyBytes: 4096 } }))!;
  const refused = await small.request('POST', '/api/rollouts', { body: big, headers: { 'content-type': 'application/yaml' } });
  await expectError(refused, 413, 'payload_too_large', /^body: larger than the 4096-byte limit \(--max-body-bytes\)$/);
  // A spec within the limit is judged on its content.
  await expectError(await server.request('POST', '/api/rollouts', { body: 'model: iris\n', headers: { 'content-type': 'application/yaml' } }), 400, 'bad_request', /^body: invalid rollout spec: /);
  assert.equal(((await (await server.request('GET', '/api/rollouts')).json()) as { total: number }).total, 0);
});

/** One raw HTTP/1.1 request (so that it can have no body at all, not even Content-Length: 0); the whole answer. */
function rawExchange(server: TestServer, head: string): Promise<string> {
  const { port } = new URL(server.baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('utf8')));
    socket.on('error', reject);
    socket.on('end', () => resolve(text));
    socket.write(head);
  });
}

test('a JSON POST without any body (no Content-Length) reads as {}, like Content-Length: 0, with a JSON Content-Type or none, instead of "send Content-Type: application/json"', async (t) => {
  const server = (await startTestServer(t))!;
  const post = (path: string, headers: string) =>
    rawExchange(server, `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n${headers}Connection: close\r\n\r\n`);
  const statusAndBody = (answer: string) => {
    const [head, body] = answer.split('\r\n\r\n');
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head!)?.[1]), body: JSON.parse(body!) as Record<string, any> };
  };
  for (const length of ['', 'Content-Length: 0\r\n']) {
    // Every field of a blob collection has a default: no body is a collection with the defaults.
    const gc = statusAndBody(await post('/api/blobs/gc', `Content-Type: application/json\r\n${length}`));
    assert.equal(gc.status, 200, JSON.stringify(gc.body));
    assert.equal(gc.body.dryRun, false);
    // A body that needs fields names them.
    const token = statusAndBody(await post('/api/tokens', `Content-Type: application/json\r\n${length}`));
    assert.equal(token.status, 400);
    assert.match(token.body.error.message, /^body\.role: /);
    // Without a Content-Type too (a client leaving out a body the OpenAPI document says is not required).
    const untyped = statusAndBody(await post('/api/blobs/gc', length));
    assert.equal(untyped.status, 200, JSON.stringify(untyped.body));
    const untypedToken = statusAndBody(await post('/api/tokens', length));
    assert.equal(untypedToken.status, 400);
    assert.match(untypedToken.body.error.message, /^body\.role: /);
    // A type named that is not JSON's is still refused, saying so.
    const text = statusAndBody(await post('/api/blobs/gc', `Content-Type: text/plain\r\n${length}`));
    assert.equal(text.status, 415);
    assert.equal(text.body.error.message, 'body: send JSON with Content-Type: application/json');
  }
  assert.equal((await (await server.request('GET', '/api/tokens')).json() as { tokens: unknown[] }).tokens.length, 1, 'no token was made');
});

test('a method the API does not serve on a path it serves is 405 naming the methods it does in Allow; OPTIONS answers with them; an unknown path stays 404', async (t) => {
  const server = (await startTestServer(t))!;
  const devicesBefore = await (await server.request('GET', '/api/devices')).text();
  const devices = await server.request('DELETE', '/api/devices');
  assert.equal(devices.headers.get('allow'), 'GET, HEAD, OPTIONS, POST');
  await expectError(devices, 405, 'method_not_allowed', /^DELETE is not served on \/api\/devices; allowed: GET, HEAD, OPTIONS, POST$/);
  assert.equal(await (await server.request('GET', '/api/devices')).text(), devicesBefore, 'nothing changed');
  // /api/blobs/gc matches /api/blobs/:sha256 too, but "gc" is no sha256: only what serves it.
  const gc = await server.request('DELETE', '/api/blobs/gc');
  assert.equal(gc.headers.get('allow'), 'OPTIONS, POST');
  await expectError(gc, 405, 'method_not_allowed', /allowed: OPTIONS, POST$/);
  // A malformed parameter on a served path is still a 405 with its pattern's methods (GET would answer 400 for the id).
  const malformed = await server.request('DELETE', '/api/jobs/JOB-1');
  assert.equal(malformed.headers.get('allow'), 'GET, HEAD, OPTIONS');
  await expectError(malformed, 405, 'method_not_allowed', /^DELETE is not served on \/api\/jobs\/JOB-1; allowed: GET, HEAD, OPTIONS$/);
  const options = await server.request('OPTIONS', '/api/devices');
  assert.equal(options.status, 204);
  assert.equal(options.headers.get('allow'), 'GET, HEAD, OPTIONS, POST');
  // A served method still answers as before, and a path the API does not serve is still 404.
  assert.equal((await server.request('GET', '/api/devices')).status, 200);
  await expectError(await server.request('DELETE', '/api/no-such-thing'), 404, 'not_found', /^no API route DELETE \/api\/no-such-thing$/);
});

test('a route that takes no query parameters refuses them, naming each, as the routes that take some refuse unknown ones', async (t) => {
  const server = (await startTestServer(t))!;
  // GET /api/models took ?limit=1 and answered with every model: a client paging it would never know.
  await expectError(await server.request('GET', '/api/models?limit=1&offset=2'), 400, 'bad_request', /^query\.limit: unknown field; query\.offset: unknown field$/);
  await expectError(await server.request('GET', '/api/whoami?verbose'), 400, 'bad_request', /^query\.verbose: unknown field$/);
  assert.equal((await server.request('GET', '/api/models')).status, 200);
  // A route with a query schema names the unknown one the same way.
  await expectError(await server.request('GET', '/api/devices?colour=red'), 400, 'bad_request', /query\.colour: unknown field/);
});

test('text with an unpaired surrogate ("\\ud800") is refused, naming the field, rather than stored as U+FFFD', async (t) => {
  const server = (await startTestServer(t))!;
  const before = await tokenCount(server);
  const response = await server.request('POST', '/api/tokens', { body: '{"role":"viewer","label":"line \\ud800 7"}', headers: { 'content-type': 'application/json' } });
  await expectError(response, 400, 'bad_request', /^body\.label: contains an unpaired surrogate/);
  assert.equal(await tokenCount(server), before, 'no token was made');
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'line 😀 7' } })).status, 201, 'a pair is fine');
});

test('a body holding bytes that are not UTF-8 is refused (400), JSON and a rollout spec alike, rather than stored with U+FFFD in their place', async (t) => {
  const server = (await startTestServer(t))!;
  const before = await tokenCount(server);
  // A Latin-1 "é" (0xff, 0xe9) and the CESU-8 bytes of a lone surrogate (ED A0 80), in a body said to be UTF-8 (or said nothing).
  for (const [bytes, type] of [
    [Buffer.concat([Buffer.from('{"role":"viewer","label":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]), 'application/json'],
    [Buffer.concat([Buffer.from('{"role":"viewer","label":"a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('b"}')]), 'application/json; charset=utf-8'],
  ] as const) {
    const response = await server.request('POST', '/api/tokens', { body: bytes, headers: { 'content-type': type } });
    await expectError(response, 400, 'bad_request', /^body: not valid UTF-8; send JSON as UTF-8$/);
  }
  assert.equal(await tokenCount(server), before, 'no token was made');
  const spec = await server.request('POST', '/api/rollouts', { body: Buffer.concat([Buffer.from('model: caf'), Buffer.from([0xe9]), Buffer.from('\n')]), headers: { 'content-type': 'application/yaml' } });
  await expectError(spec, 400, 'bad_request', /^body: not valid UTF-8; send the spec as UTF-8$/);
  assert.equal(((await (await server.request('GET', '/api/rollouts')).json()) as { total: number }).total, 0);
  // Real UTF-8, U+FFFD itself included, is taken.
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'café \ufffd' } })).status, 201);
});
