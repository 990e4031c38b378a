import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { runCli } from './helpers/run-cli.ts';
import { makeArtifact, pushArtifact, storeSnapshot } from './helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { keyId, loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { AssignmentPublisher } from '../../server/fleet/assignment-publisher.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetPort } from '../../server/fleet/store-fleet-port.ts';
import { join } from 'node:path';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { isOneLineError, mapConcurrently, runCliBatch, tempDir } from '../helpers/cli.ts';

test('CLI over gRPC: tokens create, list and revoke, models push, list, show, alias; friendly errors', async (t) => {
  const server = (await startTestServer(t))!;
  // Sign with the server's own key, which it always trusts.
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const artifact = await makeArtifact(t, { seed: 21, privateKey: key });
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];

  const created = await runCli(['tokens', 'create', '--role', 'operator', ...connection]);
  assert.equal(created.code, 0, created.stderr);
  const operator = created.stdout.trim();
  assert.match(operator, /^fp_/);

  const pushed = await runCli(['models', 'push', artifact.dir, '--server', server.grpcAddress, '--token', operator]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.match(pushed.stdout, new RegExp(`registered iris@1 \\(artifact ${artifactId(artifact.manifest)}\\)`));

  const alias = await runCli(['models', 'alias', 'iris@1', 'candidate', ...connection]);
  assert.equal(alias.code, 0, alias.stderr);
  const shown = await runCli(['models', 'show', 'iris@candidate', ...connection]);
  assert.match(shown.stdout, /^iris@1 \(candidate\)/);
  const listed = await runCli(['models', 'list', ...connection]);
  assert.match(listed.stdout, /^MODEL +VERSIONS +LATEST\niris +1 +1$/m);

  // An empty name or version around "@" is refused before any call, naming the argument (the server
  // reads an empty version as "latest", or as "clear the alias").
  const beforeRefs = await storeSnapshot(server);
  const badRefs: [string[], RegExp][] = [
    [['models', 'alias', 'iris@', 'candidate'], /^fleetprune: command-argument value 'iris@' is invalid for argument 'ref'\. expected NAME@VERSION: the version after "@" is empty \(run with --help for usage\)$/],
    [['models', 'alias', '@1', 'candidate'], /^fleetprune: command-argument value '@1' is invalid for argument 'ref'\. expected NAME@VERSION: the name before "@" is empty \(run with --help for usage\)$/],
    [['models', 'show', 'iris@'], /^fleetprune: command-argument value 'iris@' is invalid for argument 'ref'\. expected NAME\[@VERSION\|@ALIAS\]: the version after "@" is empty \(run with --help for usage\)$/],
  ];
  const badRefRuns = await mapConcurrently(badRefs, 3, ([args]) => runCli([...args, ...connection]));
  for (const [index, [args, message]] of badRefs.entries()) {
    const run = badRefRuns[index]!;
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.equal(run.stdout, '', args.join(' '));
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr.trim(), message, args.join(' '));
  }
  assert.equal(await storeSnapshot(server), beforeRefs, 'the candidate alias is still on iris@1');

  const missing = await runCli(['models', 'alias', 'iris@7', 'production', ...connection]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim(), 'fleetprune: no version iris@7; the production alias was not moved');
  const denied = await runCli(['tokens', 'create', '--role', 'admin', '--server', server.grpcAddress, '--token', operator]);
  assert.match(denied.stderr, /^fleetprune: permission denied: /);

  // tokens list shows ids and roles, never secrets; tokens revoke stops a token at once.
  const tokenList = await runCli(['tokens', 'list', '--json', ...connection]);
  assert.equal(tokenList.code, 0, tokenList.stderr);
  const records = JSON.parse(tokenList.stdout) as { id: string; role: string; revokedAt: string | null }[];
  const operatorRecord = records.find((r) => r.role === 'operator' && r.revokedAt === null);
  assert.ok(operatorRecord, tokenList.stdout);
  assert.ok(!tokenList.stdout.includes(operator), 'the secret is never listed');
  const table = await runCli(['tokens', 'list', ...connection]);
  assert.match(table.stdout, new RegExp(`^${operatorRecord.id}\\s+operator\\s+`, 'm'));
  // A job it started (queued here, on another node) goes on after the revocation: the revocation says so.
  const at = new Date().toISOString();
  const job = { kind: 'prune', request: {}, progress: null, result: null, error: null, createdAt: at, updatedAt: at, node: 'other-node' } as const;
  await server.server.ctx.store.jobs.insert({ ...job, id: 'job-by-operator', state: 'queued', createdBy: `token:${operatorRecord.id}` });
  await server.server.ctx.store.jobs.insert({ ...job, id: 'job-by-another', state: 'queued', createdBy: 'token:someone-else' });
  const revoked = await runCli(['tokens', 'revoke', operatorRecord.id, ...connection]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(
    revoked.stderr,
    `revoked token ${operatorRecord.id}\nnote: a job started with this token goes on and will register its models as it: job-by-operator (queued); fleetprune jobs cancel ID stops one\n`,
  );
  const afterRevoke = await runCli(['models', 'list', '--server', server.grpcAddress, '--token', operator]);
  assert.notEqual(afterRevoke.code, 0, 'a revoked token no longer works');
  const again = await runCli(['tokens', 'revoke', operatorRecord.id, ...connection]);
  assert.equal(again.code, 2);
  assert.equal(again.stderr.trim(), `fleetprune: token ${operatorRecord.id} is already revoked`);
  const neverIssued = await runCli(['tokens', 'revoke', '0'.repeat(operatorRecord.id.length), ...connection]);
  assert.equal(neverIssued.code, 2);
  assert.equal(neverIssued.stderr.trim(), `fleetprune: no token ${'0'.repeat(operatorRecord.id.length)}`);
  const badId = await runCli(['tokens', 'revoke', 'not/an/id', ...connection]);
  assert.equal(badId.code, 2);
  assert.match(badId.stderr, /^fleetprune: .*must be a token id/);

  const unreachable = await runCli(['models', 'list', '--server', '127.0.0.1:1', '--token', 'x']);
  assert.equal(unreachable.stderr.trim(), 'fleetprune: cannot reach the server at 127.0.0.1:1 (ECONNREFUSED)');
  assert.equal(unreachable.code, 5, 'the server cannot be reached: not a usage error');
});

test('a token no gRPC header can carry, or the server could not read (a space), is a usage error naming where it came from (it was an "internal error", exit 1)', async () => {
  const cases: [string[], Record<string, string>, string][] = [
    [[], { FLEETPRUNE_TOKEN: 'abc\ndef' }, 'FLEETPRUNE_TOKEN: the token holds a line feed (U+000A) at position 4; tokens are visible ASCII (! to ~)'],
    [['--token', 'fp_abc\r'], { FLEETPRUNE_TOKEN: 'ignored' }, '--token: the token holds a carriage return (U+000D) at position 7; tokens are visible ASCII (! to ~) (copied from a file with CRLF line endings?)'],
    [['--token', 'fp_ab\u00e9'], {}, '--token: the token holds a character (U+00E9) at position 6; tokens are visible ASCII (! to ~)'],
    [['--token', 'correct horse'], {}, '--token: the token holds a space (U+0020) at position 8; tokens are visible ASCII (! to ~)'],
  ];
  const runs = await mapConcurrently(cases, 3, ([flags, env]) => runCli(['models', 'list', '--server', '127.0.0.1:1', ...flags], env));
  for (const [index, [, , message]] of cases.entries()) {
    const run = runs[index]!;
    assert.equal(run.code, 2, run.stderr);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.equal(run.stderr.trim(), `fleetprune: ${message}`);
  }
});

test('empty FLEETPRUNE_SERVER and FLEETPRUNE_TLS_CA count as unset (an empty server address crashed the CLI: "internal error")', async () => {
  // The default address, where nothing listens here: a connection error naming it, not a crash.
  const run = await runCli(['models', 'list', '--token', 'fp_x'], { FLEETPRUNE_SERVER: '', FLEETPRUNE_TLS_CA: '' });
  assert.equal(run.code, 5, run.stderr);
  assert.match(run.stderr, /^fleetprune: cannot reach the server at 127\.0\.0\.1:9090 \(/);
  assert.ok(isOneLineError(run.stderr), run.stderr);
});

test('fleetprune server: bad start-up input is one line naming the flag, exit 2, and nothing left running', async (t) => {
  const dir = await tempDir(t);
  const aFile = join(dir, 'some-file.csv');
  await writeFile(aFile, 'a,b\n1,2\n');
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const taken = String((blocker.address() as AddressInfo).port);
  /** `fleetprune server` on ephemeral loopback ports, `flags` (pairs) overriding; killed if still running after 30 s. */
  const server = (dataDir: string, ...flags: string[]) => {
    const settings: Record<string, string> = { '--host': '127.0.0.1', '--http-port': '0', '--grpc-port': '0' };
    if (!flags.includes('--mqtt-url')) settings['--mqtt-port'] = '0'; // the embedded broker's
    for (let i = 0; i < flags.length; i += 2) settings[flags[i]!] = flags[i + 1]!;
    return runCli(['server', '--data-dir', dataDir, ...Object.entries(settings).flat()], {}, { timeoutMs: 30_000 });
  };
  const cases: [string[], RegExp][] = [
    // A taken port fails its own listener, and every listener bound before it is closed again.
    [['--grpc-port', taken], new RegExp(`^fleetprune: --grpc-port: cannot listen on 127\\.0\\.0\\.1:${taken} \\(listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${taken}\\)$`)],
    [['--http-port', taken], new RegExp(`^fleetprune: --http-port: cannot listen on 127\\.0\\.0\\.1:${taken} .*EADDRINUSE`)],
    [['--mqtt-port', taken], new RegExp(`^fleetprune: --mqtt-port: cannot listen on 127\\.0\\.0\\.1:${taken} .*EADDRINUSE`)],
    [['--host', '999.1.1.1'], /^fleetprune: --host: cannot listen on 999\.1\.1\.1 \(not an IP address or a resolvable host name\)$/],
    [['--host', '192.0.2.7'], /^fleetprune: --host: cannot listen on 192\.0\.2\.7 \(not an address of this machine\)$/],
    [['--data-root', join(dir, 'nonexistent')], /^fleetprune: --data-root: .*nonexistent does not exist$/],
    [['--data-root', aFile], /^fleetprune: --data-root: .*some-file\.csv is not a directory$/],
    // Checked at the start: the broker link retried for ever, its log not naming the flag.
    [['--mqtt-url', 'mqtt://127.0.0.1:1', '--mosquitto-dir', aFile], /^fleetprune: --mosquitto-dir: .*some-file\.csv is not a directory$/],
    // The external broker's port is in its URL: --mqtt-port beside it is refused, not dropped.
    [['--mqtt-url', 'mqtt://127.0.0.1:1884', '--mosquitto-dir', dir, '--mqtt-port', '1884'], /^fleetprune: --mqtt-port: only applies to the embedded broker; with --mqtt-url the broker's port is the one in that URL$/],
    [['--trusted-key', join(dir, 'nope.pub')], /^fleetprune: --trusted-key: cannot read public key .*nope\.pub: no such file or directory$/],
  ];
  // Two at a time, each with its own data directory.
  const results = await mapConcurrently(cases, 2, (entry) => server(join(dir, `data-${cases.indexOf(entry)}`), ...entry[0]));
  for (const [index, [flags, expected]] of cases.entries()) {
    const result = results[index]!;
    assert.equal(result.code, 2, `${flags.join(' ')}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr.trim(), expected);
    // A start refused after it locked the data dir (a port in use) removes its lock: the next start must not find it taken.
    assert.equal(existsSync(join(dir, `data-${index}`, 'server.lock')), false, `${flags.join(' ')}: the lock is left`);
  }
  const fileDataDir = await server(aFile);
  assert.equal(fileDataDir.code, 2, fileDataDir.stderr);
  assert.equal(fileDataDir.stderr, `fleetprune: --data-dir: ${aFile} is not a directory\n`);
  assert.equal(await readFile(aFile, 'utf8'), 'a,b\n1,2\n');
});

test('fleetprune server: a bad --report-burst or --report-refill-ms (flag or variable), or FLEETPRUNE_TF_BACKEND, is one line naming it, exit 2', async (t) => {
  // A file as --data-dir: a value that was not read (a variable ignored) fails the start on --data-dir instead of starting a server.
  const notADir = join(await tempDir(t), 'not-a-dir');
  await writeFile(notADir, '');
  const base = ['server', '--data-dir', notADir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'];
  const cases: { args: string[]; env?: Record<string, string>; expected: RegExp }[] = [];
  for (const [flag, variable, max] of [['--report-burst', 'FLEETPRUNE_REPORT_BURST', 10_000], ['--report-refill-ms', 'FLEETPRUNE_REPORT_REFILL_MS', 3_600_000]] as const) {
    const range = `must be a whole number from 1 to ${max}`;
    for (const value of ['0', '-1', '1.5', 'abc', String(max + 1)]) {
      // Commander refuses what is not a whole number (the option's own parser); the config, the out-of-range ones.
      const parser = value === '1.5' || value === 'abc';
      cases.push({ args: [...base, flag, value], expected: parser ? new RegExp(`^fleetprune: option '${flag} <[a-z]+>' argument '${value}' is invalid\\. not a (whole|decimal) number`) : new RegExp(`^fleetprune: ${flag} \\(or ${variable}\\): ${range}$`) });
      cases.push({ args: base, env: { [variable]: value }, expected: new RegExp(`^fleetprune: ${flag} \\(or ${variable}\\): ${range}$`) });
    }
    // A variable is read as the flag is, in decimal: Number() took these as 16 and 1.
    for (const value of ['0x10', '0b1']) cases.push({ args: base, env: { [variable]: value }, expected: new RegExp(`^fleetprune: ${flag} \\(or ${variable}\\): ${range}$`) });
  }
  // Read by every pruning job: refused at the start, not in each job, each stored as failed.
  cases.push({ args: base, env: { FLEETPRUNE_TF_BACKEND: 'bogus' }, expected: /^fleetprune: FLEETPRUNE_TF_BACKEND: must be one of tensorflow, wasm, cpu, not "bogus"$/ });
  // A backend forced by name that is not installed (tfjs-node cannot install on most machines here): refused too, not every job failed.
  if (!canResolve('@tensorflow/tfjs-node')) {
    cases.push({ args: base, env: { FLEETPRUNE_TF_BACKEND: 'tensorflow' }, expected: /^fleetprune: FLEETPRUNE_TF_BACKEND=tensorflow: @tensorflow\/tfjs-node is not installed or does not load here \(npm install @tensorflow\/tfjs-node\)$/ });
  }
  const results = await runCliBatch(cases.map(({ args, env }) => (env ? { args, env } : { args })));
  for (const [index, { args, env, expected }] of cases.entries()) {
    const label = `${env ? JSON.stringify(env) : ''} ${args.slice(base.length).join(' ')}`;
    const result = results[index]!;
    assert.equal(result.code, 2, `${label}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), `${label}: ${result.stderr}`);
    assert.match(result.stderr.trim(), expected, label);
  }
});

test('fleetprune server: a signing key lost after devices enrolled is not replaced (they pin it); the start stops, naming the file', async (t) => {
  const first = (await startTestServer(t))!;
  const enrolled = await first.request('POST', '/api/devices', { json: { id: 'dev-key-1', labels: {} } });
  assert.equal(enrolled.status, 201, await enrolled.text());
  await first.server.close();
  const keyPath = join(first.dataDir, 'keys', 'signing.key');
  await rm(keyPath);
  const result = await runCli(['server', '--data-dir', first.dataDir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], {}, { timeoutMs: 30_000 });
  assert.equal(result.code, 2, result.stderr);
  assert.ok(isOneLineError(result.stderr), result.stderr);
  assert.equal(
    result.stderr,
    `fleetprune: ${keyPath} is missing, but 1 enrolled device(s) pin its public key: restore the key from a backup (every device would refuse every model signed with a new key)\n`,
  );
  assert.equal(existsSync(keyPath), false, 'no new key was made');
});

test('fleetprune server: a signing key replaced after devices enrolled stops the start, naming the devices that pin the old one; --accept-new-signing-key starts and warns', async (t) => {
  const first = (await startTestServer(t))!;
  for (const id of ['dev-pin-1', 'dev-pin-2']) assert.equal((await first.request('POST', '/api/devices', { json: { id, labels: {} } })).status, 201);
  await first.server.close();
  const keyPath = join(first.dataDir, 'keys', 'signing.key');
  const oldKey = keyId(createPublicKey(await loadPrivateKey(keyPath)));
  const replaced = await runCli(['keys', 'generate', '--out', join(first.dataDir, 'keys'), '--force']);
  assert.equal(replaced.code, 0, replaced.stderr);
  const newKey = keyId(createPublicKey(await loadPrivateKey(keyPath)));

  const refused = await runCli(['server', '--data-dir', first.dataDir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], {}, { timeoutMs: 30_000 });
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(
    refused.stderr,
    `fleetprune: ${keyPath} is key ${newKey}, but 2 enrolled device(s) pin another (2 pin key ${oldKey} (dev-pin-1, dev-pin-2)), and would refuse every model this server sends them: ` +
      'put back the key they pin (from a backup of the keys/ directory), or, if the key was changed on purpose, start with --accept-new-signing-key and enroll those devices again\n',
  );

  // Changed on purpose: the start goes on, and says which devices to enroll again.
  const { logger, lines } = recordingLogger();
  const accepted = (await startTestServer(t, { config: { dataDir: first.dataDir, acceptNewSigningKey: true }, start: { log: logger } }))!;
  assert.ok(lines.some((line) => line.level === 40 && line.msg.startsWith(`2 enrolled device(s) pin another signing key than this server's ${newKey}`)), 'warned');
  // Until then what the server signs is dropped by those devices, unanswered: an assignment to one
  // is refused naming the key (it was taken, and the device never heard of it), and a rollout's
  // delivery counts it gone at once, saying why, where it waited for an answer that never came.
  const artifact = await makeArtifact(t, { seed: 41, privateKey: await loadPrivateKey(keyPath), version: '1', name: 'pinned' });
  assert.equal((await pushArtifact(accepted, 'pinned', artifact.dir, artifact.manifest)).status, 201);
  const pinned = `pins server key ${oldKey}, not this server's ${newKey} (enrolled before the key was replaced), so it drops what this server signs; enroll it again under a new id`;
  const assigned = await accepted.request('POST', '/api/assignments', { json: { model: 'pinned', version: '1', role: 'active', deviceIds: ['dev-pin-1'] } });
  assert.equal(assigned.status, 409);
  assert.deepEqual(await assigned.json(), { error: { code: 'conflict', message: `device dev-pin-1 ${pinned}` } });
  assert.equal((await (await accepted.request('GET', '/api/devices/dev-pin-1')).json()).assignment, null, 'nothing recorded');
  // A rollout's delivery (through StoreFleetPort, as the rollout controller calls it).
  const { ctx } = accepted.server;
  const fleet = new FleetStore(ctx.store);
  const publisher = new AssignmentPublisher({ fleet, broker: undefined as never, serverUrl: () => accepted.baseUrl, log: testLogger, signingKey: ctx.signingKey.privateKey, trustedKeys: ctx.trustedKeys });
  const port = new StoreFleetPort({ fleet, registry: ctx.registry, publisher, outcomes: new AssignmentOutcomes(), log: testLogger });
  // Gone, not refused: the rollout goes on without it, and does not fail its candidate for the device's config.
  assert.deepEqual(await port.assign({ commandId: 'rollout-1-assign-1', model: 'pinned', version: '1', role: 'candidate', deviceIds: ['dev-pin-1'] }), [{ deviceId: 'dev-pin-1', outcome: 'gone', reason: `the device ${pinned}` }]);
  assert.equal((await (await accepted.request('GET', '/api/devices/dev-pin-1')).json()).assignment, null, 'nothing recorded');
  // Once they are revoked (and enrolled again, under new ids, pinning the new key), the flag is not needed.
  for (const id of ['dev-pin-1', 'dev-pin-2']) assert.equal((await accepted.request('DELETE', `/api/devices/${id}`)).status, 204);
  assert.equal((await accepted.request('POST', '/api/devices', { json: { id: 'dev-pin-3', labels: {} } })).status, 201);
  await accepted.server.close();
  const again = (await startTestServer(t, { config: { dataDir: first.dataDir } }))!;
  assert.equal((await again.request('GET', '/api/devices/dev-pin-3')).status, 200);
});

test('models push checks the artifact first: a missing or changed file is named, and nothing is uploaded', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];

  const missing = await makeArtifact(t, { seed: 31, privateKey: key });
  await rm(join(missing.dir, 'model.onnx'));
  const pushMissing = await runCli(['models', 'push', missing.dir, ...connection]);
  assert.equal(pushMissing.code, 2, pushMissing.stderr);
  assert.ok(isOneLineError(pushMissing.stderr), pushMissing.stderr);
  assert.equal(pushMissing.stderr, `fleetprune: cannot push ${missing.dir}: model.onnx: missing\n`);

  const tampered = await makeArtifact(t, { seed: 32, privateKey: key });
  const weights = join(tampered.dir, 'tfjs', 'weights.bin');
  const bytes = await readFile(weights);
  bytes[0] = bytes[0]! ^ 0xff;
  await writeFile(weights, bytes);
  const pushTampered = await runCli(['models', 'push', tampered.dir, ...connection]);
  assert.equal(pushTampered.code, 2, pushTampered.stderr);
  assert.ok(isOneLineError(pushTampered.stderr), pushTampered.stderr);
  assert.match(pushTampered.stderr, new RegExp(`^fleetprune: cannot push ${tampered.dir}: tfjs/weights\\.bin: sha256 mismatch \\(expected [0-9a-f]{12}…, got [0-9a-f]{12}…\\)\\n$`));

  assert.deepEqual(await server.server.ctx.blobs.list(), [], 'no file of either artifact was uploaded');
  assert.deepEqual(await server.server.ctx.store.models.listModels(), []);
});

test('models push asks the server first: an untrusted or already registered artifact is refused before any file is sent', async (t) => {
  const server = (await startTestServer(t))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const foreign = await makeArtifact(t, { seed: 41, privateKey: generateKeyPairSync('ed25519').privateKey });
  const untrusted = await runCli(['models', 'push', foreign.dir, ...connection]);
  assert.equal(untrusted.code, 2, untrusted.stderr);
  assert.match(untrusted.stderr, /^fleetprune: manifest\.signature: key [0-9a-f]+ is not trusted by this server\n$/);
  assert.deepEqual(await server.server.ctx.blobs.list(), [], 'nothing was uploaded for the refused push');

  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const artifact = await makeArtifact(t, { seed: 42, privateKey: key });
  const first = await runCli(['models', 'push', artifact.dir, ...connection]);
  assert.equal(first.code, 0, first.stderr);
  const stored = (await server.server.ctx.blobs.list()).sort();
  assert.deepEqual(stored, [...new Set(Object.values(artifact.manifest.files).map((file) => file.sha256))].sort());
  // Each file the gRPC upload stored is audited once, under the uploading token, with its size.
  const uploads = (await server.server.ctx.store.audit.list({})).filter((entry) => entry.action === 'blob.upload');
  assert.deepEqual(
    uploads.map((entry) => [entry.target, entry.actor, entry.details.bytes]).sort(),
    stored.map((sha256) => [sha256, 'token:env-admin', Object.values(artifact.manifest.files).find((file) => file.sha256 === sha256)!.bytes]),
  );
  const again = await runCli(['models', 'push', artifact.dir, ...connection]);
  assert.equal(again.code, 2, again.stderr);
  assert.match(again.stderr, new RegExp(`^fleetprune: artifact ${artifactId(artifact.manifest)} is already registered as iris@1\\n$`));
  assert.equal((await server.server.ctx.store.models.listVersions('iris', {})).length, 1);
});

test('models push FILE (a report.json, a data file, a model.onnx given for the artifact directory) says so as verify does, not ENOTDIR', async (t) => {
  const dir = await tempDir(t);
  const files = ['report.json', 'wine.csv', 'model.onnx'].map((name) => join(dir, name));
  for (const file of files) await writeFile(file, '{}');
  const connection = ['--server', '127.0.0.1:1', '--token', 'x'];
  const results = await runCliBatch([...files.map((file) => ({ args: ['models', 'push', file, ...connection] })), { args: ['models', 'push', join(dir, 'nope'), ...connection] }]);
  files.forEach((file, i) => {
    assert.deepEqual([results[i]!.code, results[i]!.stderr], [2, `fleetprune: ${file}: not a directory (give the artifact directory, the one holding manifest.json)\n`], file);
  });
  assert.deepEqual([results[files.length]!.code, results[files.length]!.stderr], [2, `fleetprune: ${join(dir, 'nope')}: no such artifact directory\n`]);
});

function canResolve(id: string): boolean {
  try {
    createRequire(import.meta.url).resolve(id);
    return true;
  } catch {
    return false;
  }
}
