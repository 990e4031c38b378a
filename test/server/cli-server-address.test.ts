/**
 * README ("The same from a terminal"): the CLI's --server (or FLEETPRUNE_SERVER) is the server's
 * gRPC address, host:port. A URL (the dashboard's http://HOST:PORT is the one the demo prints), an
 * empty host or a port outside 1-65535 used to reach grpc-js as it was: a URL failed with "cannot
 * reach the server ... if the server runs with --tls-cert, pass --tls-ca", even when a server was
 * listening there, and ":9090" waited for the 60 s deadline after a DeprecationWarning. They are
 * refused at once, naming the flag or variable and the form expected. A host alone gets the
 * server's default gRPC port (grpc-js would dial 443). An empty address read as an internal error
 * (grpc-js could not parse it), and a blank one, an empty port or a path after the port as "cannot
 * reach"; a host name that does not resolve now says so rather than asking about the port.
 */
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { createServer } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { runCliBatch } from '../helpers/cli.ts';
import { ServerConnection } from '../../server/cli/grpc-client.ts';
import type { UserError } from '../../shared/util/errors.ts';

const EXPECTED = "expected the server's gRPC address as host:port (e.g. 127.0.0.1:9090)";

test('--server and FLEETPRUNE_SERVER refuse a URL, an empty host or a bad port with one clear line', async () => {
  const [url, httpsEnv, emptyHost, bigPort, zeroPort, unreachable] = await runCliBatch([
    { args: ['models', 'list', '--server', 'http://127.0.0.1:9090', '--token', 'x'] },
    { args: ['devices', 'list', '--token', 'x'], env: { FLEETPRUNE_SERVER: 'https://fleet.example.com:9090' } },
    { args: ['models', 'list', '--server', ':9090', '--token', 'x'] },
    { args: ['models', 'list', '--server', 'localhost:99999', '--token', 'x'] },
    { args: ['models', 'list', '--server', '[::1]:0', '--token', 'x'] },
    // A well-formed address still gets its connection error.
    { args: ['models', 'list', '--server', '127.0.0.1:1', '--token', 'x'] },
  ]);
  assert.deepEqual(
    [url, httpsEnv, emptyHost, bigPort, zeroPort].map(({ code, stdout, stderr }) => ({ code, stdout, stderr })),
    [
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not a URL: http://127.0.0.1:9090\n` },
      { code: 2, stdout: '', stderr: `fleetprune: FLEETPRUNE_SERVER: ${EXPECTED}, not a URL: https://fleet.example.com:9090\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not ":9090"\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not "localhost:99999"\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not "[::1]:0"\n` },
    ],
  );
  assert.equal(unreachable!.code, 5);
  assert.equal(unreachable!.stderr, 'fleetprune: cannot reach the server at 127.0.0.1:1 (ECONNREFUSED)\n');
});

test('--server and FLEETPRUNE_SERVER refuse an empty or blank address, an empty port or a path after the port, not an internal error', async () => {
  const results = await runCliBatch([
    { args: ['models', 'list', '--server', '', '--token', 'x'] },
    { args: ['devices', 'list', '--server', '', '--token', 'x'] },
    { args: ['models', 'list', '--server', ' ', '--token', 'x'] },
    { args: ['models', 'list', '--server', '127.0.0.1:', '--token', 'x'] },
    { args: ['models', 'list', '--server', 'localhost:38879/', '--token', 'x'] },
    { args: ['devices', 'list', '--token', 'x'], env: { FLEETPRUNE_SERVER: ' ' } },
  ]);
  assert.deepEqual(
    results.map(({ code, stdout, stderr }) => ({ code, stdout, stderr })),
    [
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not ""\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not ""\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not " "\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not "127.0.0.1:"\n` },
      { code: 2, stdout: '', stderr: `fleetprune: --server: ${EXPECTED}, not "localhost:38879/"\n` },
      { code: 2, stdout: '', stderr: `fleetprune: FLEETPRUNE_SERVER: ${EXPECTED}, not " "\n` },
    ],
  );
});

test('an empty --tls-ca or --token (a flag given from an unset variable) is refused, never a plain-text connection or the variable in its place', async () => {
  const results = await runCliBatch([
    { args: ['models', 'list', '--server', '127.0.0.1:1', '--token', 'x', '--tls-ca', ''], env: { FLEETPRUNE_TLS_CA: '/etc/ssl/ca.crt' } },
    { args: ['models', 'list', '--server', '127.0.0.1:1', '--token', 'x', '--tls-ca', ''] },
    { args: ['models', 'list', '--server', '127.0.0.1:1', '--token', ''], env: { FLEETPRUNE_TOKEN: 'from-the-env-0123456789' } },
  ]);
  const tls = 'fleetprune: --tls-ca: empty (was the variable it was given from unset?); give the CA certificate file, or leave the flag out (FLEETPRUNE_TLS_CA, or no TLS)\n';
  assert.deepEqual(
    results.map(({ code, stdout, stderr }) => ({ code, stdout, stderr })),
    [
      { code: 2, stdout: '', stderr: tls },
      { code: 2, stdout: '', stderr: tls },
      { code: 2, stdout: '', stderr: 'fleetprune: --token: empty (was the variable it was given from unset?); pass the token, or leave the flag out to use FLEETPRUNE_TOKEN\n' },
    ],
  );
});

test('--server with a host name that does not resolve says so, not "is that its gRPC port"', async (t) => {
  // .invalid names never resolve (RFC 6761), wherever the test runs; but a machine whose DNS server
  // does not answer says so instead (EAI_AGAIN, the next test), and the CLI tells the two apart.
  const lookupCode = await lookup('nosuchhost.invalid').then(() => 'resolved', (error: NodeJS.ErrnoException) => error.code);
  if (lookupCode !== 'ENOTFOUND') return t.skip(`this machine's resolver answers ${lookupCode} for a .invalid name, not ENOTFOUND`);
  const results = await runCliBatch([
    { args: ['models', 'list', '--server', 'nosuchhost.invalid', '--token', 'x'] },
    { args: ['devices', 'list', '--server', 'typo-host.invalid:38879', '--token', 'x'] },
  ]);
  assert.deepEqual(
    results.map(({ code, stdout, stderr }) => ({ code, stdout, stderr })),
    [
      { code: 2, stdout: '', stderr: 'fleetprune: cannot reach the server at nosuchhost.invalid:9090: the host name nosuchhost.invalid does not resolve (a typo?)\n' },
      { code: 2, stdout: '', stderr: 'fleetprune: cannot reach the server at typo-host.invalid:38879: the host name typo-host.invalid does not resolve (a typo?)\n' },
    ],
  );
});

test('a host name whose lookup failed for now (EAI_AGAIN: the DNS server did not answer) exits 5 with "try again", not 2 "a typo?"', async () => {
  // grpc-js's own lookup of a .invalid name fails for real; the lookup that says why answers as a DNS outage would.
  const outage = Object.assign(new Error('getaddrinfo EAI_AGAIN nosuchhost.invalid'), { code: 'EAI_AGAIN' });
  const down = new ServerConnection({ server: 'nosuchhost.invalid:38879', token: 'x' }, { lookup: () => Promise.reject(outage) });
  const flaky = new ServerConnection({ server: 'nosuchhost.invalid:38879', token: 'x' }, { lookup: () => Promise.resolve({ address: '127.0.0.1', family: 4 }) });
  const typo = new ServerConnection({ server: 'nosuchhost.invalid:38879', token: 'x' }, { lookup: () => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND nosuchhost.invalid'), { code: 'ENOTFOUND' })) });
  // A DNS server that does not answer at all: the CLI does not wait the resolver's whole timeout again.
  const silent = new ServerConnection({ server: 'nosuchhost.invalid:38879', token: 'x' }, { lookup: () => new Promise(() => {}) });
  try {
    const failures = await Promise.all([down, flaky, typo, silent].map((connection) => connection.unary('ModelRegistry', 'ListModels', {}).then(() => assert.fail('resolved'), (error: UserError) => error)));
    assert.deepEqual(
      failures.map((error) => [error.exitCode, error.message]),
      [
        [5, 'cannot reach the server at nosuchhost.invalid:38879: the host name nosuchhost.invalid could not be looked up (EAI_AGAIN: the DNS server did not answer); try again'],
        [5, 'cannot reach the server at nosuchhost.invalid:38879: the host name nosuchhost.invalid could not be looked up (its lookup failed a moment ago and works now); try again'],
        [2, 'cannot reach the server at nosuchhost.invalid:38879: the host name nosuchhost.invalid does not resolve (a typo?)'],
        [5, 'cannot reach the server at nosuchhost.invalid:38879: the host name nosuchhost.invalid could not be looked up (no answer within 3 s: the DNS server did not answer); try again'],
      ],
    );
  } finally {
    for (const connection of [down, flaky, typo, silent]) connection.close();
  }
});

test("--server at a port that answers but not with gRPC (the server's HTTP port, 8080 for 9090) names that likelihood, not only TLS", async (t) => {
  const http = createServer((_req, res) => res.writeHead(404).end('not found'));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => http.close(() => resolve())));
  const { port } = http.address() as AddressInfo;
  const [result] = await runCliBatch([{ args: ['models', 'list', '--server', `127.0.0.1:${port}`, '--token', 'x'] }]);
  assert.equal(result!.code, 2);
  assert.equal(
    result!.stderr,
    `fleetprune: cannot reach the server at 127.0.0.1:${port} (unavailable; is that its gRPC port, grpc= on its start-up line, not http=? If the server runs with --tls-cert, pass --tls-ca FILE (or FLEETPRUNE_TLS_CA))\n`,
  );
});

test('--server and FLEETPRUNE_SERVER with a host alone dial the server\'s default gRPC port 9090, not grpc-js\'s 443', async () => {
  const results = await runCliBatch([
    { args: ['models', 'list', '--server', '127.0.0.1', '--token', 'x'] },
    { args: ['models', 'list', '--server', '[::1]', '--token', 'x'] },
    { args: ['models', 'list', '--server', '::1', '--token', 'x'] },
    { args: ['devices', 'list', '--token', 'x'], env: { FLEETPRUNE_SERVER: 'localhost' } },
  ]);
  // Whatever answers at 9090 on this machine (most often nothing), the line names the address dialled.
  const dialled = results.map(({ stderr }) => /^fleetprune: cannot reach the server at (\S+) \(/.exec(stderr)?.[1] ?? stderr);
  assert.deepEqual(dialled, ['127.0.0.1:9090', '[::1]:9090', '[::1]:9090', 'localhost:9090']);
  // Refused (nothing there): exit 5, the server cannot be reached, not a usage error (2).
  for (const { code, stderr } of results) if (stderr.includes('(ECONNREFUSED)')) assert.equal(code, 5, stderr);
});

test('--server at a port where HTTP/2 answers but not gRPC (another service, a proxy\'s error page) says so, not grpc-js\'s "Received HTTP status code 404"', async (t) => {
  const ports: number[] = [];
  for (const status of [404, 200]) {
    const h2 = createHttp2Server((_req, res) => {
      res.writeHead(status, { 'content-type': 'text/html' });
      res.end('<h1>not here</h1>');
    });
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => h2.close(() => resolve())));
    ports.push((h2.address() as AddressInfo).port);
  }
  const results = await runCliBatch(ports.map((port) => ({ args: ['models', 'list', '--server', `127.0.0.1:${port}`, '--token', 'x'] })));
  const hint = 'not as a fleetprune server does: is that its gRPC port, grpc= on its start-up line (and a proxy in between set to pass gRPC through)?';
  assert.deepEqual(
    results.map(({ code, stderr }) => [code, stderr]),
    [
      [2, `fleetprune: the server at 127.0.0.1:${ports[0]} answered HTTP 404, ${hint}\n`],
      [2, `fleetprune: the server at 127.0.0.1:${ports[1]} answered without a gRPC status, ${hint}\n`],
    ],
  );
});

test('a refused --server that holds credentials is quoted without them (the line may go to a CI log)', async () => {
  const [bare, url, atInPassword, dns, bidi] = await runCliBatch([
    { args: ['devices', 'list', '--server', 'user:srvSECRET@127.0.0.1:36775', '--token', 'x'] },
    { args: ['devices', 'list', '--token', 'x'], env: { FLEETPRUNE_SERVER: 'http://user:srvSECRET@127.0.0.1:36775' } },
    // A password holding @ or /: all of it goes.
    { args: ['devices', 'list', '--server', 'u:pa/s@s@h:9090', '--token', 'x'] },
    // grpc-js's dns: form passed the address check, and a "cannot reach" line quoted it whole.
    { args: ['devices', 'list', '--server', 'dns:///u:srvSECRET@127.0.0.1:36775', '--token', 'x'] },
    // A text-direction override in what is quoted: escaped, not sent to the terminal.
    { args: ['devices', 'list', '--server', 'fleet\u202e.example:9090/x', '--token', 'x'] },
  ]);
  assert.match(bidi!.stderr, /not "fleet\\u202e\.example:9090\/x"\n$/);
  assert.doesNotMatch(bidi!.stderr, /\u202e/);
  const noCredentials = 'a gRPC address holds no user:password@ (the token goes in --token or FLEETPRUNE_TOKEN)';
  assert.deepEqual([atInPassword!.code, atInPassword!.stderr], [2, `fleetprune: --server: ${noCredentials}, not "***@h:9090"\n`]);
  assert.deepEqual([bare!.code, bare!.stderr], [2, `fleetprune: --server: ${noCredentials}, not "***@127.0.0.1:36775"\n`]);
  assert.deepEqual([dns!.code, dns!.stderr], [2, `fleetprune: --server: ${noCredentials}, not "dns://***@127.0.0.1:36775"\n`]);
  assert.deepEqual([url!.code, url!.stderr], [2, `fleetprune: FLEETPRUNE_SERVER: ${EXPECTED}, not a URL: http://***@127.0.0.1:36775\n`]);
});
