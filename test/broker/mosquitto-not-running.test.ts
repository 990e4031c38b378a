import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { MosquittoNotRunning, reloadMosquittoFromPidFile } from '../../server/broker/mosquitto-reload.ts';
import { UserError } from '../../shared/util/errors.ts';
import { engineMissing, freePort } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

interface LogLine {
  level: number;
  msg: string;
  component?: string;
  err?: string;
}

/** A logger that keeps every line (debug and up) for the assertions. */
function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug', base: { name: 'test' } }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

const WARN = 40;
const ERROR = 50;
const FIRST_INSTALL = /^files written; cannot reload Mosquitto: no pid file at (.*) \(is Mosquitto running\? see deploy\/mosquitto\/README\.md for the first-install order\)/;

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-mosq-not-running-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The documented first install starts the server before Mosquitto. The server logged two errors
 * per retry: "Mosquitto's password and ACL files are out of date (a revoked device can still
 * connect)", though it had written them and only the SIGHUP had failed (no pid file), and "the
 * leader cannot connect to the external broker" with the pid-file error, though it never tried.
 */
test('first install, Mosquitto not started yet: the broker writes the files, says in one line there is no pid file (no error, not stale), and does not try to connect', async (t) => {
  const dir = await scratch(t);
  const pidFile = join(dir, 'mosquitto.pid');
  const { logger, lines } = capturingLogger();
  const credentials = new InMemoryCredentialStore();
  await credentials.enroll('dev-1');
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') };
  const broker = new ExternalBroker({ url: `mqtt://127.0.0.1:${await freePort()}`, server, credentials, logger, mosquittoAuth: { dir: join(dir, 'auth'), reload: reloadMosquittoFromPidFile(pidFile) } });
  t.after(() => broker.stop());
  const error = await broker.start().then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof UserError, `start() fails on one line (a UserError): ${String(error)}`);
  assert.match(error.message, FIRST_INSTALL);
  assert.equal(FIRST_INSTALL.exec(error.message)?.[1], pidFile, 'it names the pid file');
  for (const file of ['passwords', 'acl']) {
    const written = await stat(join(dir, 'auth', file));
    assert.equal(written.mode & 0o777, 0o600, `${file} is written, mode 0600`);
  }
  // No running Mosquitto enforces old credentials: not stale (the metric and the alert stay 0).
  assert.equal(broker.credentialsProblem(), null, 'not stale');
  assert.deepEqual(lines.filter((line) => line.level >= ERROR), [], 'nothing at error level');
  assert.deepEqual(lines.filter((line) => /connect/i.test(line.msg)), [], 'no connection attempt, so nothing about one');
});

test('a running Mosquitto whose pid file is elsewhere (a wrong --mosquitto-pid-file) is not taken for no Mosquitto: stale, an error naming the broker that answers', { timeout: 60_000 }, async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const dir = await scratch(t);
  const { mosquitto, password } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  const { logger, lines } = capturingLogger();
  const credentials = new InMemoryCredentialStore();
  await credentials.enroll('dev-1');
  const wrong = join(dir, 'elsewhere', 'mosquitto.pid');
  const broker = new ExternalBroker({ url: mosquitto.url, server: { username: DEFAULT_SERVER_USERNAME, password }, credentials, logger, mosquittoAuth: { dir: mosquitto.authDir, reload: reloadMosquittoFromPidFile(wrong) } });
  t.after(() => broker.stop());
  const error = await broker.start().then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof Error, `start() fails: ${String(error)}`);
  assert.doesNotMatch(error.message, FIRST_INSTALL, 'not the first-install line');
  assert.match(broker.credentialsProblem() ?? '', new RegExp(`cannot reload the Mosquitto that answers at ${mosquitto.url.replace(/[.]/g, '\\.')}: .*is --mosquitto-pid-file its pid file\\?`), 'stale, naming the broker');
  assert.ok(lines.some((line) => line.level >= ERROR), 'said at error level');
});

test('Mosquitto running but not reloadable (pid file gone) is stale, an error saying the files were written; once it stops, files written without a reload are not stale, said once at warn', { timeout: 60_000 }, async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'Mosquitto', 'no mosquitto binary (apt-get install mosquitto)');
  const dir = await scratch(t);
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  const { logger, lines } = capturingLogger();
  const credentials = new InMemoryCredentialStore();
  const broker = new ExternalBroker({ url: mosquitto.url, server: { username: DEFAULT_SERVER_USERNAME, password }, credentials, logger, mosquittoAuth: { dir: mosquitto.authDir, reload: reloadMosquittoFromPidFile(pidFile) } });
  t.after(() => broker.stop());
  await broker.start();
  assert.equal(broker.connected, true, 'connected');

  // A running Mosquitto that is not reloaded keeps the old credentials: stale.
  await rm(pidFile);
  await credentials.enroll('dev-1');
  const error = await broker.credentialsChanged().then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof UserError, `a failure: ${String(error)}`);
  assert.match(error.message, FIRST_INSTALL);
  assert.match(broker.credentialsProblem() ?? '', FIRST_INSTALL, 'stale while a running Mosquitto was not reloaded');
  const errors = lines.filter((line) => line.level >= ERROR);
  assert.equal(errors.length, 1, `one error line: ${JSON.stringify(errors)}`);
  assert.match(errors[0]!.msg, /written, but the running Mosquitto could not be told to reload them/);

  // Mosquitto stops: nothing lets anyone in with the old files; the new ones are read at its start.
  await mosquitto.stop({ keepFiles: true });
  await waitFor(() => !broker.connected, 10_000, 'the server to see the broker gone');
  lines.length = 0;
  await credentials.enroll('dev-2');
  await broker.credentialsChanged();
  assert.equal(broker.credentialsProblem(), null, 'not stale with no Mosquitto running');
  await broker.credentialsChanged();
  const said = lines.filter((line) => FIRST_INSTALL.test(line.msg));
  assert.equal(said.length, 1, `said once: ${JSON.stringify(lines)}`);
  assert.equal(said[0]!.level, WARN, 'at warn');
  assert.deepEqual(lines.filter((line) => line.level >= ERROR), [], 'nothing at error level');

  // Mosquitto starts again (with its pid file): the background retry reloads it, and says so.
  await mosquitto.start();
  await writeFile(pidFile, `${mosquitto.pid}\n`);
  await waitFor(() => lines.some((line) => /up to date again and Mosquitto reloaded them/.test(line.msg)), 20_000, 'the reload once Mosquitto runs');
  assert.equal(broker.credentialsProblem(), null);
});

test('server started before Mosquitto (the documented first-install order): one warn line per retry naming the missing pid file, no error lines, then it connects once Mosquitto runs', { timeout: 60_000 }, async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'Mosquitto', 'no mosquitto binary (apt-get install mosquitto)');
  const dir = await scratch(t);
  const mosquitto = await MosquittoProcess.create(binary);
  t.after(() => mosquitto.stop());
  const pidFile = join(dir, 'mosquitto.pid');
  const { logger, lines } = capturingLogger();
  const starting = startTestServer(t, {
    config: { mqttUrl: mosquitto.url, mqttPassword: randomBytes(18).toString('base64url'), mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile },
    start: { log: logger },
  });
  // The server writes the files first; Mosquitto can start only then.
  await waitFor(() => lines.some((line) => FIRST_INSTALL.test(line.msg)), 20_000, 'the server to say it waits for Mosquitto');
  await mosquitto.start();
  await writeFile(pidFile, `${mosquitto.pid}\n`);
  const server = (await starting)!;
  await waitFor(async () => /^fleetprune_fleet_broker_connected 1$/m.test(await (await server.request('GET', '/metrics')).text()), 20_000, 'the leader connected');

  const waiting = lines.filter((line) => FIRST_INSTALL.test(line.msg));
  assert.ok(waiting.length >= 1, 'said at least once');
  for (const line of waiting) {
    assert.equal(line.level, WARN, `at warn: ${JSON.stringify(line)}`);
    assert.match(line.msg, new RegExp(`no pid file at ${pidFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} .*; the leader connects once Mosquitto runs, retrying in \\d+ s$`));
  }
  assert.equal(new Set(waiting.map((line) => line.msg.replace(/retrying in \d+ s$/, ''))).size, 1, 'one wording');
  const fleetAndBroker = lines.filter((line) => line.component === 'fleet' || line.component === 'broker');
  assert.deepEqual(fleetAndBroker.filter((line) => line.level >= ERROR), [], 'no error-level line from the fleet or the broker');
  assert.deepEqual(fleetAndBroker.filter((line) => /out of date|cannot connect to the external broker/.test(line.msg)), [], 'neither misleading line');
  assert.match(await (await server.request('GET', '/metrics')).text(), /^fleetprune_fleet_broker_credentials_stale 0$/m, 'not stale');
});

test('a stale pid file whose process id now belongs to another program: that program is not signalled, and the reload says the pid file is stale', async (t) => {
  const dir = await scratch(t);
  const pidFile = join(dir, 'mosquitto.pid');
  // `sleep` ends on SIGHUP, as most programs do.
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  await new Promise((resolve) => other.once('spawn', resolve));
  await writeFile(pidFile, `${other.pid}\n`);
  const error = await reloadMosquittoFromPidFile(pidFile)().then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof MosquittoNotRunning, `refused as no Mosquitto running: ${String(error)}`);
  assert.equal(error.message, `process ${other.pid} of the pid file ${pidFile} is "sleep", not Mosquitto: a stale pid file (is Mosquitto running? see deploy/mosquitto/README.md for the first-install order)`);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(other.exitCode, null, 'the other program still runs');
  assert.equal(other.signalCode, null, 'and got no signal');

  // Another program named like Mosquitto's (its command-line client) is not the broker either: a
  // copy of sleep named mosquitto_sub, which stays up whatever the network does.
  const named = join(dir, 'mosquitto_sub');
  await copyFile(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), named);
  await chmod(named, 0o755);
  const client = spawn(named, ['60'], { stdio: 'ignore' });
  t.after(() => client.kill('SIGKILL'));
  await new Promise((resolve) => client.once('spawn', resolve));
  await writeFile(pidFile, `${client.pid}\n`);
  const refused = await reloadMosquittoFromPidFile(pidFile)().then(() => undefined, (caught: unknown) => caught);
  assert.ok(refused instanceof MosquittoNotRunning && /is "mosquitto_sub", not Mosquitto/.test(refused.message), `refused: ${String(refused)}`);
});

test('a pid file naming a Mosquitto that has exited but is not reaped yet (a zombie) is not taken for a running one', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const dir = await scratch(t);
  const pidFile = join(dir, 'mosquitto.pid');
  // A shell that starts Mosquitto and becomes `sleep`, which never reaps it: once Mosquitto is
  // killed, its pid names a zombie "mosquitto". It is killed from here, only once the shell is
  // sleep and Mosquitto runs: a shell still waiting on a command of its own (sleep 0.3 did) reaps
  // any child that ends meanwhile, and under load that left no process at all to find.
  const parent = spawn('sh', ['-c', `${binary} -p ${await freePort()} & echo $!; exec sleep 60`], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  const pid = Number((await new Promise<Buffer>((resolve) => parent.stdout!.once('data', resolve))).toString().trim());
  const comm = async (of: number) => (await readFile(`/proc/${of}/comm`, 'utf8').catch(() => '')).trim();
  await waitFor(async () => (await comm(parent.pid!)) === 'sleep' && (await comm(pid)) === 'mosquitto', 10_000, 'the shell is sleep and Mosquitto runs');
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).includes(') Z '), 10_000, 'mosquitto a zombie');
  await writeFile(pidFile, `${pid}\n`);
  const error = await reloadMosquittoFromPidFile(pidFile)().then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof MosquittoNotRunning, `refused as no Mosquitto running: ${String(error)}`);
  assert.equal(error.message, `process ${pid} of the pid file ${pidFile} has exited (is Mosquitto running? see deploy/mosquitto/README.md for the first-install order)`);
});
