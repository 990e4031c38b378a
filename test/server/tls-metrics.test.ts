import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { credentials, status } from '@grpc/grpc-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError } from '../helpers/cli.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { runCli } from './helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

test('TLS: HTTPS and gRPC over TLS with a self-signed certificate made in the test', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const server = (await startTestServer(t, { config: { tlsCert: cert, tlsKey: key } }))!;
  const ca = await readFile(cert);
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(`${server.baseUrl}/api/models`, { ca, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
  assert.deepEqual(JSON.parse(body), { models: [] });
  const secure = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN, credentials.createSsl(ca));
  const plain = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  t.after(() => (secure.close(), plain.close()));
  assert.deepEqual((await secure.call('ListModels', {})).models, []);
  await assert.rejects(plain.call('ListModels', {}), (error: any) => error.code === status.UNAVAILABLE, 'a plaintext client cannot talk to the TLS port');

  // The CLI over TLS to an IP address: the answer and nothing else (no DeprecationWarning lines).
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const listed = await runCli(['models', 'list', ...connection, '--tls-ca', cert]);
  assert.deepEqual(listed, { code: 0, stdout: '', stderr: 'no models\n' });
  // Every list keeps stdout for its rows alone (a script's `| while read`): the empty note on stderr.
  for (const [noun, args] of [['jobs', ['jobs', 'list']], ['devices', ['devices', 'list']], ['rollouts', ['rollout', 'list']]] as const) {
    assert.deepEqual(await runCli([...args, ...connection, '--tls-ca', cert]), { code: 0, stdout: '', stderr: `no ${noun}\n` }, noun);
  }
  // Without --tls-ca the CLI speaks plaintext to a TLS server: the error says what to do.
  const plaintext = await runCli(['models', 'list', ...connection]);
  assert.equal(plaintext.code, 2);
  assert.equal(plaintext.stderr, `fleetprune: cannot reach the server at ${server.grpcAddress} (unavailable; is that its gRPC port, grpc= on its start-up line, not http=? If the server runs with --tls-cert, pass --tls-ca FILE (or FLEETPRUNE_TLS_CA))\n`);
  // A CA that did not sign the server's certificate: the certificate check is named, not an unreachable server.
  const otherCert = join(dir, 'other.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=other', '-keyout', join(dir, 'other-key.pem'), '-out', otherCert,
  ], { stdio: 'ignore' });
  const untrusted = await runCli(['models', 'list', ...connection, '--tls-ca', otherCert], {}, { timeoutMs: 30_000 });
  assert.equal(untrusted.code, 2, untrusted.stderr);
  assert.equal(
    untrusted.stderr,
    `fleetprune: cannot connect to the server at ${server.grpcAddress} over TLS: self-signed certificate (check that --tls-ca holds the CA that signed its certificate, and that --server names a host the certificate is for)\n`,
  );
  // --tls-ca against a port that does not speak TLS (a plaintext server's): said so, not blamed on a certificate.
  const plainServer = await startTestServer(t);
  const notTls = await runCli(['models', 'list', '--server', plainServer!.grpcAddress, '--token', ADMIN_TOKEN, '--tls-ca', cert], {}, { timeoutMs: 30_000 });
  assert.equal(notTls.code, 2, notTls.stderr);
  assert.equal(notTls.stderr, `fleetprune: cannot connect to the server at ${plainServer!.grpcAddress} over TLS: it does not speak TLS there (a server without --tls-cert needs no --tls-ca; or is that its HTTP port, not grpc= on its start-up line?)\n`);
  // --tls-ca against the TLS server's HTTP port (TLS, but no gRPC there): named, with the likely cause.
  const httpPort = new URL(server.baseUrl).port;
  const httpsPort = await runCli(['models', 'list', '--server', `127.0.0.1:${httpPort}`, '--token', ADMIN_TOKEN, '--tls-ca', cert], {}, { timeoutMs: 30_000 });
  assert.equal(httpsPort.code, 2, httpsPort.stderr);
  assert.equal(httpsPort.stderr, `fleetprune: cannot connect to the server at 127.0.0.1:${httpPort} over TLS: it speaks TLS there but not gRPC (is that its HTTP port, not grpc= on its start-up line?)\n`);
  // A TLS service that asks for a client certificate (not a fleetprune server): said so, not blamed on --tls-ca.
  const mutual = createSecureServer({ key: await readFile(key), cert: ca, requestCert: true, rejectUnauthorized: true });
  await new Promise<void>((resolve) => mutual.listen(0, '127.0.0.1', resolve));
  t.after(() => mutual.close());
  const mutualAddress = `127.0.0.1:${(mutual.address() as AddressInfo).port}`;
  const clientCert = await runCli(['models', 'list', '--server', mutualAddress, '--token', ADMIN_TOKEN, '--tls-ca', cert], {}, { timeoutMs: 30_000 });
  assert.equal(clientCert.code, 2, clientCert.stderr);
  assert.equal(clientCert.stderr, `fleetprune: cannot connect to the server at ${mutualAddress} over TLS: it asks for a client certificate, which fleetprune does not send (fleetprune servers do not ask for one: is that another service?)\n`);
  // A CA file that is no certificate is named as such, not reported as an unreachable server.
  const junk = join(dir, 'junk.txt');
  await writeFile(junk, 'junk\n');
  const fifo = join(dir, 'ca.fifo');
  execFileSync('mkfifo', [fifo]);
  const bundle = join(dir, 'broken.pem');
  await writeFile(bundle, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
  for (const [ca, message] of [
    [junk, `fleetprune: --tls-ca: ${junk} holds no PEM certificate\n`],
    [bundle, new RegExp(`^fleetprune: --tls-ca: ${bundle} holds a certificate that does not parse \\(.+\\)\\n$`)],
    [join(dir, 'absent.pem'), new RegExp(`^fleetprune: --tls-ca: cannot read ${dir}/absent\\.pem \\(ENOENT`)],
    // A FIFO held the command for good; a directory or a device is not read either.
    [fifo, `fleetprune: --tls-ca: cannot read ${fifo} (not a regular file)\n`],
    [dir, `fleetprune: --tls-ca: cannot read ${dir} (it is a directory)\n`],
    ['/dev/zero', `fleetprune: --tls-ca: cannot read /dev/zero (not a regular file)\n`],
  ] as const) {
    const refused = await runCli(['models', 'list', ...connection, '--tls-ca', ca], {}, { timeoutMs: 30_000 });
    assert.equal(refused.code, 2, refused.stderr);
    assert.ok(isOneLineError(refused.stderr), refused.stderr);
    if (typeof message === 'string') assert.equal(refused.stderr, message);
    else assert.match(refused.stderr, message);
  }
});

test('metrics: default process metrics, registry gauges, HTTP and gRPC histograms by route and code', async (t) => {
  const server = (await startTestServer(t))!;
  await server.request('GET', '/api/models');
  await server.request('GET', '/api/models/nope');
  await server.request('GET', '/api/models', { token: null });
  const client = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  t.after(() => client.close());
  await client.call('ListModels', {});
  const text = await (await server.request('GET', '/metrics', { token: null })).text();
  assert.match(text, /^fleetprune_process_cpu_user_seconds_total /m);
  assert.match(text, /^fleetprune_registry_models 0$/m);
  assert.match(text, /^fleetprune_registry_versions 0$/m);
  assert.match(text, /fleetprune_http_request_duration_seconds_count\{method="GET",route="\/api\/models",code="200"\} 1/);
  assert.match(text, /fleetprune_http_request_duration_seconds_count\{method="GET",route="\/api\/models\/:name",code="404"\} 1/);
  assert.match(text, /fleetprune_http_request_duration_seconds_count\{method="GET",route="\/api\/models",code="401"\} 1/);
  assert.match(text, /fleetprune_grpc_request_duration_seconds_count\{method="ModelRegistry\/ListModels",code="OK"\} 1/);
  // A request its client gives up on (an upload cut off here) is counted as 499: it was never counted.
  await new Promise<void>((resolve) => {
    const upload = httpRequest(`${server.baseUrl}/api/blobs/${'a'.repeat(64)}`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/octet-stream', 'content-length': '1000000' } });
    upload.on('error', () => resolve());
    upload.write(Buffer.alloc(1000));
    setTimeout(() => {
      upload.destroy();
      resolve();
    }, 300);
  });
  let counted = '';
  for (let i = 0; i < 50 && !counted; i++) {
    const metrics = await (await server.request('GET', '/metrics', { token: null })).text();
    counted = /fleetprune_http_request_duration_seconds_count\{method="PUT",route="\/api\/blobs\/:sha256",code="499"\} 1/.exec(metrics)?.[0] ?? '';
    if (!counted) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok(counted, 'the abandoned upload is counted with code 499');
});

test('--metrics-auth token: /metrics answers only a token allowed to read; a device token or a revoked one is refused', async (t) => {
  const server = (await startTestServer(t, { config: { metricsAuth: 'token' } }))!;
  const create = async (role: string) =>
    ((await (await server.request('POST', '/api/tokens', { json: { role, label: `${role} scraper` } })).json()) as { token: string; record: { id: string } });
  const viewer = await create('viewer');
  const device = await create('device');

  const anonymous = await server.request('GET', '/metrics', { token: null });
  assert.equal(anonymous.status, 401);
  assert.doesNotMatch(await anonymous.text(), /fleetprune_/, 'no metric leaks with the refusal');
  assert.equal((await server.request('GET', '/metrics', { token: device.token })).status, 403);
  const scraped = await server.request('GET', '/metrics', { token: viewer.token });
  assert.equal(scraped.status, 200);
  assert.match(await scraped.text(), /^fleetprune_registry_versions 0$/m);

  assert.equal((await server.request('DELETE', `/api/tokens/${viewer.record.id}`)).status, 204);
  assert.equal((await server.request('GET', '/metrics', { token: viewer.token })).status, 401);
  // /healthz stays open for load balancers.
  assert.equal((await server.request('GET', '/healthz', { token: null })).status, 200);
});
