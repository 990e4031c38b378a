import assert from 'node:assert/strict';
import { join } from 'node:path';
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
  assert.equal(first.stderr, `older entries may follow: fleetprune audit --before ${rest[0]!.id}\n`);
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
    // A beginning ending in a dot: every action under it.
    assert.deepEqual((await cli('--action', 'device.')).map((entry) => entry.action), ['device.enroll', 'device.enroll']);
    // The target's beginning, case and all: device:osaka is osaka-2 only, not Osaka-1.
    assert.deepEqual((await cli('--target', 'device:osaka')).map((entry) => entry.target), ['device:osaka-2']);
    // Every version of iris (registered: iris@1), not its alias (iris:candidate).
    assert.deepEqual((await rest('target=iris%40')).map((entry) => entry.target), ['iris@1']);
    assert.deepEqual(await cli('--actor', all[0]!.actor, '--action', 'alias.set'), all.filter((entry) => entry.action === 'alias.set'));
    // Nothing matches: an empty list, and a word on stderr for the table.
    const none = await runCli(['audit', '--action', 'rollout.start', ...connection]);
    assert.deepEqual([none.code, none.stderr], [0, 'no entries match\n']);
    // A bad filter names its flag (CLI) or its field (REST).
    const bad = await runCli(['audit', '--action', 'Rollout Start', ...connection]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^fleetprune: --action: must be an action such as rollout\.assign, or the beginning of some ending in a dot \(rollout\.\)\n$/);
    const badRest = await server.request('GET', '/api/audit?action=%25');
    assert.equal(badRest.status, 400);
    assert.match(((await badRest.json()) as { error: { message: string } }).error.message, /^query\.action: must be an action such as rollout\.assign/);
  });
}
