import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError, REPO_ROOT, runCli, runCliBatch, tempDir } from '../helpers/cli.ts';
import { spawnServer } from '../server/helpers/server-process.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { registerVersion } from '../rollout-api/helpers/rollout-fixtures.ts';
import { enrolledDevice } from '../helpers/fleet-ingest-probe.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { telemetryTopic } from '../../shared/protocol/topics.ts';

test('devices enroll: an --out that could not be written is refused before enrolling (a dangling symlink, a path under /proc); nothing is enrolled', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, join(dir, 'server'));
  const connection = ['--server', `127.0.0.1:${server.grpcPort}`, '--token', ADMIN_TOKEN];
  // A dangling symlink: the write (an exclusive create, which never follows a link) would fail on it.
  const dangling = join(dir, 'agent.json');
  await symlink(join(dir, 'nowhere', 'agent.json'), dangling);
  const linked = await runCli(['devices', 'enroll', '--id', 'press-1', '--out', dangling, ...connection]);
  assert.equal(linked.code, 2, linked.stderr);
  assert.equal(linked.stderr, `fleetprune: --out: ${dangling} already exists (it may hold another device's credentials)\n`);
  // /proc takes no new files, though access() says its directories are writable.
  const proc = await runCli(['devices', 'enroll', '--id', 'press-2', '--out', '/proc/agent.json', ...connection]);
  assert.equal(proc.code, 2, proc.stderr);
  assert.ok(isOneLineError(proc.stderr), proc.stderr);
  assert.match(proc.stderr, /^fleetprune: --out: cannot write \/proc\/agent\.json/);
  const listed = await runCli(['devices', 'list', '--json', ...connection]);
  assert.deepEqual(JSON.parse(listed.stdout), [], 'nothing enrolled');
  // Both ids are still free.
  const fresh = await runCli(['devices', 'enroll', '--id', 'press-1', '--out', join(dir, 'fresh.json'), ...connection]);
  assert.equal(fresh.code, 0, fresh.stderr);
});

test('devices enroll --out - writes the agent config to stdout (to pipe it to the device), not to a file named "-"', async (t) => {
  const server = (await startTestServer(t))!;
  const dir = await tempDir(t);
  const enrolled = await runCli(['devices', 'enroll', '--id', 'pipe-1', '--labels', 'site=osaka', '--out', '-', '--server', server.grpcAddress, '--token', ADMIN_TOKEN], {}, { ownProcess: true });
  assert.equal(enrolled.code, 0, enrolled.stderr);
  assert.equal(enrolled.stderr, 'enrolled pipe-1; its agent config (with secrets) is on stdout\n');
  const config = JSON.parse(enrolled.stdout) as { deviceId: string; labels: Record<string, string> };
  assert.deepEqual([config.deviceId, config.labels], ['pipe-1', { site: 'osaka' }]);
  const { existsSync } = await import('node:fs');
  assert.equal(existsSync(join(dir, '-')) || existsSync(join(process.cwd(), '-')), false, 'no file named -');
});

test('devices enroll --out - whose stdout fails (a full disk, a reader gone: an ssh that never connected) says the device is enrolled and its secrets lost, and to enroll it again under a new id', async (t) => {
  const server = (await startTestServer(t))!;
  const enroll = (id: string, stdout: 'pipe' | number) =>
    spawn(process.execPath, ['bin/fleetprune.js', 'devices', 'enroll', '--id', id, '--out', '-', '--server', server.grpcAddress, '--token', ADMIN_TOKEN], { cwd: REPO_ROOT, stdio: ['ignore', stdout, 'pipe'] });
  const finished = async (child: ReturnType<typeof spawn>) => {
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, stderr };
  };
  const full = openSync('/dev/full', 'w');
  t.after(() => closeSync(full));
  const toFull = await finished(enroll('full-1', full));
  assert.equal(toFull.code, 1, toFull.stderr);
  assert.equal(
    toFull.stderr,
    'fleetprune: cannot write the output to stdout (ENOSPC: no space left on device, write); device full-1 is enrolled but its agent config (with secrets) did not reach it; revoke full-1 and enroll the device under a new id (ids are never reused)\n',
  );
  // The reader gone before the config is written.
  const gone = enroll('gone-1', 'pipe');
  gone.stdout!.destroy();
  const toGone = await finished(gone);
  assert.equal(toGone.code, 141, toGone.stderr);
  assert.equal(toGone.stderr, 'fleetprune: the reader of stdout went away: device gone-1 is enrolled but its agent config (with secrets) did not reach it; revoke gone-1 and enroll the device under a new id (ids are never reused)\n');
});

test('devices enroll --server-url with a query, fragment or user:password@ is refused, naming it; nothing is enrolled', async (t) => {
  const server = (await startTestServer(t))!;
  const dir = await tempDir(t);
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const urls = ['http://fleet.example:8080/?site=a', 'http://fleet.example:8080/#x', 'http://ops:secret@fleet.example:8080'];
  const runs = await runCliBatch(urls.map((url, i) => ({ args: ['devices', 'enroll', '--id', `d-${i}`, '--server-url', url, '--out', join(dir, `${i}.json`), ...connection] })));
  for (const [i, run] of runs.entries()) {
    assert.equal(run.code, 2, `${urls[i]}: ${run.stderr}`);
    assert.match(run.stderr, /^fleetprune: --server-url: must be a base URL without a query \(\?…\), a fragment \(#…\) or user:password@ \(paths are appended to it\)\n$/);
  }
  // --broker-url is named as the flag too, not as the request field behind it.
  const broker = await runCli(['devices', 'enroll', '--id', 'd-b', '--broker-url', 'http://fleet.example:1883', '--out', join(dir, 'b.json'), ...connection]);
  assert.equal(broker.code, 2, broker.stderr);
  assert.match(broker.stderr, /^fleetprune: --broker-url: must be an mqtt:\/\/ or mqtts:\/\/ URL/);
  // So are --labels and assign's --selector, and a label within them (they were request.labels.KEY, request.selector_json.matchLabels.KEY).
  const [labels, manyLabels, selector] = await runCliBatch([
    { args: ['devices', 'enroll', '--id', 'd-l', '--labels', 'example.com/tier=edge', '--out', join(dir, 'l.json'), ...connection] },
    { args: ['devices', 'enroll', '--id', 'd-m', '--labels', Array.from({ length: 65 }, (_, i) => `k${i}=v`).join(','), '--out', join(dir, 'm.json'), ...connection] },
    { args: ['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--selector', 'example.com/tier=edge', ...connection] },
  ]);
  assert.equal(labels!.code, 2, labels!.stderr);
  assert.match(labels!.stderr, /^fleetprune: --labels: example\.com\/tier: label keys are 1-64 characters/);
  assert.equal(manyLabels!.code, 2, manyLabels!.stderr);
  assert.match(manyLabels!.stderr, /^fleetprune: --labels: at most 64 labels per device \(got 65\)/);
  assert.equal(selector!.code, 2, selector!.stderr);
  assert.match(selector!.stderr, /^fleetprune: --selector: example\.com\/tier: label keys are 1-64 characters/);
  const listed = (await (await server.request('GET', '/api/devices')).json()) as { devices: unknown[] };
  assert.deepEqual(listed.devices, []);
  // A plain base URL, with a path, is fine.
  const ok = await runCli(['devices', 'enroll', '--id', 'd-ok', '--server-url', 'https://fleet.example/prefix', '--out', join(dir, 'ok.json'), ...connection]);
  assert.equal(ok.code, 0, ok.stderr);
});

test('devices list: a label value holding a newline or an escape sequence is shown escaped, one device a line', async (t) => {
  const server = await startTestServer(t);
  if (!server) return;
  // Enrollment refuses such values now; a device enrolled by an older server may hold them, and
  // the table must not let one forge a row or drive the terminal. Stored straight into the store.
  const labels = { site: 'osaka', note: 'a\nevil-1  online  -  -  -  forged\u001b[2J\u009b31m\u202e' };
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-1', labels } });
  assert.equal(enrolled.status, 400, await enrolled.clone().text());
  assert.equal((await server.request('POST', '/api/devices', { json: { id: 'dev-1', labels: { site: 'osaka' } } })).status, 201);
  await server.server.ctx.store.engine.run('UPDATE devices SET labels = ? WHERE id = ?', [JSON.stringify(labels), 'dev-1']);
  const listed = await runCli(['devices', 'list', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 2, listed.stdout);
  assert.match(lines[1]!, /^dev-1\s/);
  assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/.test(listed.stdout), JSON.stringify(listed.stdout));
  assert.ok(lines[1]!.includes('note=a\\nevil-1  online  -  -  -  forged\\x1b[2J\\x9b31m\\u202e'), lines[1]);
  // --json carries the labels as they are.
  const json = await runCli(['devices', 'list', '--json', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout)[0].labels, labels);
});

test('devices list --json shows each device as GET /api/devices does, all but its heartbeat: who enrolled it, and its retained assignment in full', async (t) => {
  const server = await startTestServer(t);
  if (!server) return;
  const { ctx } = server.server;
  await registerVersion(ctx.store, 'iris', '1', ctx.signingKey.privateKey);
  for (const id of ['dev-1', 'dev-2']) assert.equal((await server.request('POST', '/api/devices', { json: { id, labels: { site: 'osaka' } } })).status, 201);
  // dev-1 is offline: its assignment stays retained for it.
  const assigned = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['dev-1'] } });
  assert.equal(assigned.status, 201, await assigned.clone().text());
  const rest = ((await (await server.request('GET', '/api/devices')).json()) as { devices: Record<string, unknown>[] }).devices;
  const cli = await runCli(['devices', 'list', '--json', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 0, cli.stderr);
  const withoutHeartbeat = rest.map(({ heartbeat: _heartbeat, ...device }) => device);
  assert.deepEqual(JSON.parse(cli.stdout), withoutHeartbeat);
  assert.deepEqual(Object.keys((withoutHeartbeat[0]!.assignment ?? {}) as object).sort(), ['id', 'issuedAt', 'model', 'role', 'version'], 'dev-1 has its assignment');
});

test('devices list --selector/--state/--active keep the devices an operator asks for (labels as a rollout selects them); devices show gives one device as GET /api/devices/:id does', async (t) => {
  const server = await startTestServer(t);
  if (!server) return;
  const { ctx } = server.server;
  await registerVersion(ctx.store, 'iris', '1', ctx.signingKey.privateKey);
  const labels: Record<string, Record<string, string>> = { 'dev-1': { site: 'osaka', hw: 'pi4' }, 'dev-2': { site: 'osaka', hw: 'x86' }, 'dev-3': { site: 'kyoto', hw: 'pi4' }, 'dev-4': { site: 'osaka', hw: 'pi4' } };
  for (const [id, pairs] of Object.entries(labels)) assert.equal((await server.request('POST', '/api/devices', { json: { id, labels: pairs } })).status, 201);
  assert.equal((await server.request('DELETE', '/api/devices/dev-4')).status, 204);
  assert.equal((await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['dev-1'] } })).status, 201);
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const [osakaPi, offline, revoked, running, bad, shown, shownJson, missing] = await runCliBatch([
    { args: ['devices', 'list', '--selector', 'site=osaka,hw=pi4', ...connection] },
    { args: ['devices', 'list', '--state', 'offline', '--selector', 'site=osaka', '--json', ...connection] },
    { args: ['devices', 'list', '--state', 'revoked', ...connection] },
    { args: ['devices', 'list', '--active', 'iris@1', ...connection] },
    { args: ['devices', 'list', '--state', 'asleep', ...connection] },
    { args: ['devices', 'show', 'dev-1', ...connection] },
    { args: ['devices', 'show', 'dev-1', '--json', ...connection] },
    { args: ['devices', 'show', 'dev-9', ...connection] },
  ]);
  // An alias is the version it points to; a model or version the registry does not hold, and a
  // selector no device could match or an empty one, are refused rather than matching nothing (or all).
  assert.equal((await server.request('PUT', '/api/models/iris/aliases/production', { json: { version: '1' } })).status, 200);
  const [byAlias, noModel, noVersion, emptySelector, badKey] = await runCliBatch([
    { args: ['devices', 'list', '--active', 'iris@production', '--json', ...connection] },
    { args: ['devices', 'list', '--active', 'nosuch', ...connection] },
    { args: ['devices', 'list', '--active', 'iris@7', ...connection] },
    { args: ['devices', 'list', '--selector', '', ...connection] },
    { args: ['devices', 'list', '--selector', 'ключ=x', ...connection] },
  ]);
  assert.deepEqual([byAlias!.code, byAlias!.stdout.trim(), byAlias!.stderr], [0, '[]', ''], 'nobody runs it yet: an empty list, and --json prints nothing else');
  // A device that reports iris@1 active is found by the alias that points to it.
  const versionRow = ((await (await server.request('GET', '/api/models/iris/versions/1')).json()) as { artifactId: string });
  const device = await enrolledDevice(t, server, 'dev-5');
  const heartbeat = { schema: 1, deviceId: 'dev-5', sentAt: new Date().toISOString(), uptimeSeconds: 5, cpuPercent: 1, rssBytes: 1000, active: { model: 'iris', version: '1', sha256: versionRow.artifactId }, candidate: null, previous: null };
  await device.publishAsync(telemetryTopic('dev-5'), Buffer.from(JSON.stringify(heartbeat)), { qos: 1 });
  await waitFor(async () => ((await (await server.request('GET', '/api/devices/dev-5')).json()) as { active: unknown }).active !== null, 10_000, 'dev-5 reports iris@1 active');
  const onProduction = await runCli(['devices', 'list', '--active', 'iris@production', '--json', ...connection]);
  assert.deepEqual((JSON.parse(onProduction.stdout) as { id: string }[]).map((d) => d.id), ['dev-5']);
  assert.match(noModel!.stderr, /^fleetprune: .*nosuch/);
  assert.notEqual(noModel!.code, 0);
  assert.match(noVersion!.stderr, /^fleetprune: .*iris@7/);
  assert.match(emptySelector!.stderr, /^fleetprune: --selector: no key=value pairs given \(an empty selector would match every device\)\n$/);
  assert.match(badKey!.stderr, /^fleetprune: --selector ключ=x: label keys are 1-64 characters/);
  for (const run of [noModel!, noVersion!, emptySelector!, badKey!]) assert.ok(isOneLineError(run.stderr), run.stderr);
  const ids = (stdout: string) => stdout.trim().split('\n').slice(1).map((line) => line.split(/\s+/)[0]);
  assert.equal(osakaPi!.code, 0, osakaPi!.stderr);
  assert.deepEqual(ids(osakaPi!.stdout), ['dev-1', 'dev-4'], 'revoked devices keep their labels');
  assert.equal(osakaPi!.stderr, '2 of 4 devices match\n');
  assert.deepEqual((JSON.parse(offline!.stdout) as { id: string }[]).map((device) => device.id), ['dev-1', 'dev-2']);
  assert.deepEqual(ids(revoked!.stdout), ['dev-4']);
  // Nobody runs it yet (dev-1's assignment waits for it to connect): said, on stderr.
  assert.deepEqual([running!.code, running!.stdout, running!.stderr], [0, '', 'no devices match (of 4)\n']);
  assert.equal(bad!.code, 2);
  assert.ok(isOneLineError(bad!.stderr), bad!.stderr);
  assert.match(bad!.stderr, /--state.*must be online, offline, revoked, not "asleep"/);

  assert.equal(shown!.code, 0, shown!.stderr);
  const lines = shown!.stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, 3), ['device     dev-1', 'state      offline', 'labels     site=osaka,hw=pi4']);
  assert.match(shown!.stdout, /^active     -$/m);
  assert.match(shown!.stdout, /^assigned   iris@1 as active \(\S+, issued \S+\)$/m);
  assert.match(shown!.stdout, /^refused    -$/m);
  const { heartbeat: _heartbeat, ...rest } = (await (await server.request('GET', '/api/devices/dev-1')).json()) as Record<string, unknown>;
  assert.deepEqual(JSON.parse(shownJson!.stdout), rest);
  assert.notEqual(missing!.code, 0);
  assert.ok(isOneLineError(missing!.stderr), missing!.stderr);
  assert.match(missing!.stderr, /no device dev-9/);
});
