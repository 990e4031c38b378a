import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findExecutable } from '../helpers/engines.ts';
import { cliFlags, splitExecStart } from './cli-flags.ts';

/**
 * deploy/systemd/fleetprune-server.service.d/tls.conf. The server's unit runs as a user that is
 * not root (DynamicUser=yes, or `mosquitto` with the mosquitto drop-in), so a TLS private key
 * that only root may read cannot be passed as a path under /etc/fleetprune: the server refuses to
 * start (EACCES). The drop-in hands it over as a systemd credential. This test does what systemd
 * does (copies each LoadCredential= source into the unit's credentials directory, owned by the
 * service's user, mode 0400), then starts the real server as an unprivileged uid with the
 * FLEETPRUNE_SERVER_ARGS line the drop-in documents, and fetches /healthz over HTTPS.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DROP_IN = join(REPO, 'deploy/systemd/fleetprune-server.service.d/tls.conf');
const UNIT_CREDENTIALS = '/run/credentials/fleetprune-server.service/';
const ETC = '/etc/fleetprune/';
/** The uid:gid the server runs as here, standing in for the unit's DynamicUser (nobody). */
const SERVICE_UID = 65534;

interface Started {
  code: number | null;
  output: string;
  httpPort?: number;
  stop: () => Promise<void>;
}

/** Starts `fleetprune server` as SERVICE_UID; resolves once it listens or has exited. */
function startServerAs(setpriv: string, dataDir: string, extraArgs: string[]): Promise<Started> {
  const child = spawn(
    setpriv,
    ['--reuid', String(SERVICE_UID), '--regid', String(SERVICE_UID), '--clear-groups', process.execPath, 'bin/fleetprune.js', 'server', '--data-dir', dataDir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0', ...extraArgs],
    { cwd: REPO, env: { PATH: process.env.PATH, HOME: '/', FLEETPRUNE_ADMIN_TOKEN: 'tls-credential-test-admin-token', FLEETPRUNE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  };
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ code: null, output: `${output}(no listening line after 60 s)`, stop }), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const listening = /listening http=(\d+)/.exec(output);
      if (listening) {
        clearTimeout(timer);
        resolve({ code: null, output, httpPort: Number(listening[1]), stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, stop });
    });
  });
}

function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('fleetprune-server.service.d/tls.conf: a root-only TLS key reaches the unprivileged server as a credential, and it serves HTTPS', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to run the server as another uid, as systemd does');
  const setpriv = findExecutable(['setpriv', '/usr/bin/setpriv']);
  if (!setpriv) return t.skip('setpriv (util-linux) is not installed');
  const openssl = findExecutable(['openssl', '/usr/bin/openssl']);
  if (!openssl) return t.skip('openssl is not installed (it makes the test certificate)');

  const text = await readFile(DROP_IN, 'utf8');
  const credentials = new Map<string, string>();
  for (const match of text.matchAll(/^LoadCredential=([\w.-]+):(\S+)$/gm)) credentials.set(match[1]!, match[2]!);
  assert.ok(credentials.size > 0, 'the drop-in loads at least one credential');
  const example = /^#\s+FLEETPRUNE_SERVER_ARGS=(.+)$/m.exec(text);
  assert.ok(example, 'the drop-in shows the FLEETPRUNE_SERVER_ARGS line to use');
  const args = splitExecStart(example[1]!);
  const known = await cliFlags('server');
  assert.deepEqual(args.filter((arg) => arg.startsWith('--') && !known.has(arg)), [], 'flags not in fleetprune server --help');
  const certArg = args[args.indexOf('--tls-cert') + 1];
  const keyArg = args[args.indexOf('--tls-key') + 1];
  assert.ok(certArg !== undefined && certArg.startsWith(ETC), `--tls-cert under ${ETC}: ${certArg}`);
  assert.ok(keyArg !== undefined && keyArg.startsWith(UNIT_CREDENTIALS), `--tls-key is the unit's credential (${UNIT_CREDENTIALS}…), not a root-only file: ${keyArg}`);
  const keySource = credentials.get(keyArg.slice(UNIT_CREDENTIALS.length));
  assert.ok(keySource !== undefined && keySource.startsWith(ETC), `a LoadCredential= line provides ${keyArg} from ${ETC}`);

  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-tls-credential-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o755);
  const etc = join(dir, 'etc');
  const credentialsDir = join(dir, 'credentials');
  const dataDir = join(dir, 'data');
  const local = (path: string) => (path.startsWith(ETC) ? join(etc, path.slice(ETC.length)) : path.startsWith(UNIT_CREDENTIALS) ? join(credentialsDir, path.slice(UNIT_CREDENTIALS.length)) : path);

  // The operator's files: a public certificate and a key only root may read.
  await mkdir(dirname(local(certArg)), { recursive: true, mode: 0o755 });
  await mkdir(dirname(local(keySource)), { recursive: true, mode: 0o755 });
  execFileSync(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', local(keySource), '-out', local(certArg)], { stdio: 'ignore' });
  await chmod(local(certArg), 0o644);
  await chmod(local(keySource), 0o600);
  await mkdir(dataDir, { mode: 0o700 });
  await chown(dataDir, SERVICE_UID, SERVICE_UID);

  // Without the drop-in: the key's own path, which the service's user cannot open.
  const direct = await startServerAs(setpriv, dataDir, args.map((arg) => (arg === keyArg ? local(keySource) : local(arg))));
  await direct.stop();
  assert.notEqual(direct.code, null, `the server started with a key it should not be able to read:\n${direct.output}`);
  assert.match(direct.output, /--tls-key: cannot read .*EACCES/);

  // What systemd does for LoadCredential=: a copy per credential, readable by the service's user only.
  await mkdir(credentialsDir);
  for (const [id, source] of credentials) {
    await copyFile(local(source), join(credentialsDir, id));
    await chown(join(credentialsDir, id), SERVICE_UID, SERVICE_UID);
    await chmod(join(credentialsDir, id), 0o400);
  }
  await chown(credentialsDir, SERVICE_UID, SERVICE_UID);
  await chmod(credentialsDir, 0o500);

  const server = await startServerAs(setpriv, dataDir, args.map(local));
  t.after(() => server.stop());
  assert.ok(server.httpPort, `the server did not start with the drop-in's arguments:\n${server.output}`);
  const health = await httpsGet(`https://127.0.0.1:${server.httpPort}/healthz`, await readFile(local(certArg)));
  assert.equal(health.status, 200, health.body);
});
