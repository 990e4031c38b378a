import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPackageDefinition, Server, ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_FILE } from '../../shared/proto/load-proto.ts';
import { test } from 'node:test';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { runCli } from './helpers/run-cli.ts';
import { makeArtifact } from './helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

test('fleetprune audit prints the audit log newest first, pages with --limit and --before, and --json is GET /api/audit; a bad --before is refused', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const artifact = await makeArtifact(t, { seed: 71, privateKey: key });
  assert.equal((await runCli(['models', 'push', artifact.dir, ...connection])).code, 0);
  assert.equal((await runCli(['models', 'alias', 'iris@1', 'candidate', ...connection])).code, 0);

  const rest = ((await (await server.request('GET', '/api/audit')).json()) as { entries: { id: number; action: string; target: string }[] }).entries;
  const json = await runCli(['audit', '--json', ...connection]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), rest);
  const actions = rest.map((entry) => entry.action);
  assert.ok(actions.indexOf('alias.set') >= 0 && actions.indexOf('alias.set') < actions.indexOf('version.register'), `newest first: ${actions.join(', ')}`);

  const table = await runCli(['audit', ...connection]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^ID +AT +ACTOR +ACTION +TARGET +DETAILS$/);
  assert.equal(lines.length, rest.length + 1);
  assert.match(lines[1]!, new RegExp(`^${rest[0]!.id} +\\S+ +\\S+ +alias\\.set +iris`));
  assert.equal(table.stderr, '', 'a page short of the limit is the last');

  // One at a time, back from the newest.
  const first = await runCli(['audit', '--limit', '1', ...connection]);
  assert.equal(first.stdout.trimEnd().split('\n').length, 2);
  assert.equal(first.stderr, `older entries may follow: fleetprune audit --limit 1 --before ${rest[0]!.id}\n`);
  const second = await runCli(['audit', '--limit', '1', '--before', String(rest[0]!.id), '--json', ...connection]);
  assert.deepEqual(JSON.parse(second.stdout), [rest[1]]);

  for (const [flag, value] of [['--before', '0'], ['--before', 'x'], ['--limit', '0']] as const) {
    const refused = await runCli(['audit', flag, value, ...connection]);
    assert.equal(refused.code, 2, `${flag} ${value}`);
    assert.match(refused.stderr, new RegExp(`^fleetprune: .*${flag}.*\\n$`));
  }
});

for (const engine of ['sqlite', 'postgres'] as const) {
  test(`fleetprune audit --action/--actor/--target keep the entries asked for, exactly, case and all (${engine}); REST and gRPC filter alike; bad filters are refused`, async (t) => {
    const server = await startTestServer(t, { engine });
    if (!server) return;
    const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
    const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
    const artifact = await makeArtifact(t, { seed: 71, privateKey: key });
    assert.equal((await runCli(['models', 'push', artifact.dir, ...connection])).code, 0);
    assert.equal((await runCli(['models', 'alias', 'iris@1', 'candidate', ...connection])).code, 0);
    for (const id of ['Osaka-1', 'osaka-2']) assert.equal((await server.request('POST', '/api/devices', { json: { id, labels: {} } })).status, 201);

    const all = ((await (await server.request('GET', '/api/audit')).json()) as { entries: { action: string; actor: string; target: string }[] }).entries;
    const rest = async (query: string) => ((await (await server.request('GET', `/api/audit?${query}`)).json()) as { entries: { action: string; target: string }[] }).entries;
    const cli = async (...flags: string[]) => {
      const run = await runCli(['audit', '--json', ...flags, ...connection]);
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout) as { action: string; target: string }[];
    };
    const enrolls = all.filter((entry) => entry.action === 'device.enroll');
    assert.equal(enrolls.length, 2);
    assert.deepEqual(await cli('--action', 'device.enroll'), enrolls);
    assert.deepEqual(await rest('action=device.enroll'), enrolls);
    // Ending in *: every action it begins.
    assert.deepEqual((await cli('--action', 'device.*')).map((entry) => entry.action), ['device.enroll', 'device.enroll']);
    // A target's beginning, case and all: device:osaka* is osaka-2 only, not Osaka-1. Without the *,
    // the target itself (device:osaka-2), not osaka-20 or any other it begins.
    assert.deepEqual((await cli('--target', 'device:osaka*')).map((entry) => entry.target), ['device:osaka-2']);
    assert.deepEqual(await cli('--target', 'device:osaka'), []);
    assert.deepEqual((await cli('--target', 'device:osaka-2')).map((entry) => entry.target), ['device:osaka-2']);
    // Every version of iris (registered: iris@1), not its alias (iris:candidate).
    assert.deepEqual((await rest('target=iris%40*')).map((entry) => entry.target), ['iris@1']);
    assert.deepEqual(await cli('--actor', all[0]!.actor, '--action', 'alias.set'), all.filter((entry) => entry.action === 'alias.set'));
    // Nothing matches: an empty list, and a word on stderr for the table.
    const none = await runCli(['audit', '--action', 'rollout.start', ...connection]);
    assert.deepEqual([none.code, none.stderr], [0, 'no entries match\n']);
    // A bad filter names its flag (CLI) or its field (REST).
    const bad = await runCli(['audit', '--action', 'Rollout Start', ...connection]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^fleetprune: --action: must be an action such as rollout\.assign, or the beginning of some ending in \* \(rollout\.\*\)\n$/);
    // A full page's next command keeps the filters, quoted for the shell where they need it.
    const paged = await runCli(['audit', '--limit', '1', '--action', 'device.*', ...connection]);
    assert.match(paged.stderr, /^older entries may follow: fleetprune audit --action 'device\.\*' --limit 1 --before \d+\n$/);
    // An empty filter (a variable unset) is refused, not sent as "no filter".
    const empty = await runCli(['audit', '--actor', '', ...connection]);
    assert.deepEqual([empty.code, empty.stdout], [2, '']);
    assert.match(empty.stderr, /^fleetprune: --actor: empty; give a value or leave the option out/);
    const badRest = await server.request('GET', '/api/audit?action=%25');
    assert.equal(badRest.status, 400);
    assert.match(((await badRest.json()) as { error: { message: string } }).error.message, /^query\.action: must be an action such as rollout\.assign/);
  });
}

test('fleetprune audit with a filter refuses the answer of a server that did not apply it (older than the filters: proto3 drops the fields it does not know), rather than showing the whole log as filtered', async (t) => {
  // A server of the release before: ListAudit's response without `filtered`, answering every entry.
  const older = readFileSync(PROTO_FILE, 'utf8').replace(/\n\s*\/\/ True when the server applied[^\n]*\n[^\n]*\n\s*bool filtered = 2;/, '');
  assert.doesNotMatch(older, /bool filtered/);
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-older-proto-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'fleetprune.proto'), older);
  const root = loadPackageDefinition(loadSync(join(dir, 'fleetprune.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })) as any;
  const server = new Server();
  const entry = { id: '1', at: '2026-12-01T00:00:00.000Z', actor: 'token:admin', action: 'device.enroll', target: 'device:a', details_json: '{}' };
  server.addService(root.fleetprune.v1.Audit.service, { ListAudit: (_call: unknown, done: (error: null, response: unknown) => void) => done(null, { entries: [entry] }) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  t.after(() => server.forceShutdown());
  const connection = ['--server', `127.0.0.1:${port}`, '--token', ADMIN_TOKEN];
  const refused = await runCli(['audit', '--action', 'rollout.rollback', '--target', 'rollout:*', ...connection]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(refused.stdout, '');
  assert.equal(refused.stderr, `fleetprune: the server at 127.0.0.1:${port} does not filter the audit log (a server older than this command): upgrade it, or leave out --action, --target\n`);
  // A call it does not have at all (Devices.GetDevice, newer than it) is said to be the server's age.
  const show = await runCli(['devices', 'show', 'dev-1', ...connection]);
  assert.equal(show.stderr, `fleetprune: the server at 127.0.0.1:${port} does not have GetDevice (a server older than this command): upgrade the server, or use a fleetprune command of its release\n`);
  // Without a filter, its answer is what was asked for.
  const plain = await runCli(['audit', '--json', ...connection]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(JSON.parse(plain.stdout).map((e: { action: string }) => e.action), ['device.enroll']);
});
