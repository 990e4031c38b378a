import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { warnAboutCertificateDates } from '../../server/app/start-server.ts';
import { certificateHint } from '../../server/cli/grpc-client.ts';
import { tempDir } from '../helpers/cli.ts';
import { runCli } from './helpers/run-cli.ts';

/** --tls-cert dates the clients will refuse are said at the start; a passphrase-protected --tls-key is refused, saying so. */

async function selfSigned(dir: string, keyArgs: string[] = ['-nodes']): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', ...keyArgs, '-days', '30', '-subj', '/CN=localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

test('a certificate that has expired, is not valid yet or expires within two weeks is warned about; one valid for longer is not', async (t) => {
  const { cert } = await selfSigned(await tempDir(t));
  const pem = await readFile(cert);
  const day = 86_400_000;
  const warnings = (now: Date) => {
    const lines: string[] = [];
    warnAboutCertificateDates(pem, cert, { warn: (_fields: object, message: string) => void lines.push(message) } as never, now);
    return lines;
  };
  assert.deepEqual(warnings(new Date()), [], 'valid for 30 days');
  assert.match(warnings(new Date(Date.now() + 20 * day))[0]!, new RegExp(`^--tls-cert: ${cert} expires on \\S+, in 9 day\\(s\\): replace it and restart before then$`));
  assert.match(warnings(new Date(Date.now() + 31 * day))[0]!, new RegExp(`^--tls-cert: ${cert} expired on \\S+: clients \\(the CLI, agents, Prometheus\\) refuse it; replace it and restart$`));
  assert.match(warnings(new Date(Date.now() - 2 * day))[0]!, /is not valid before \S+ \(is this host's clock right\?\): clients refuse it until then$/);
});

test('a passphrase-protected --tls-key is refused naming that, not as a key that does not parse', async (t) => {
  const dir = await tempDir(t);
  const { cert, key } = await selfSigned(dir, ['-passout', 'pass:secret-passphrase']);
  const result = await runCli(['server', '--data-dir', join(dir, 'data'), '--tls-cert', cert, '--tls-key', key, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], {}, { timeoutMs: 30_000 });
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stderr, `fleetprune: --tls-key: ${key} is encrypted with a passphrase, which the server cannot be given: write it out unencrypted (openssl pkey -in KEY -out KEY.plain) and keep it mode 0600\n`);
});

// An expired server certificate was blamed on --tls-ca or --server ("check that --tls-ca holds the CA…").
test("the CLI's hint for a certificate that did not verify: its dates for an expired or not-yet-valid one, the CA and host name otherwise", () => {
  assert.equal(certificateHint('certificate has expired'), "the server's certificate has expired: renew it (--tls-cert), or check this machine's clock");
  assert.equal(certificateHint('certificate is not yet valid'), "the server's certificate is not valid yet: check this machine's clock, and the server's");
  assert.equal(certificateHint('self-signed certificate'), 'check that --tls-ca holds the CA that signed its certificate, and that --server names a host the certificate is for');
  assert.equal(certificateHint("Hostname/IP does not match certificate's altnames: IP: 127.0.0.2 is not in the cert's list"), 'check that --tls-ca holds the CA that signed its certificate, and that --server names a host the certificate is for');
});
