import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { registerVersion, stagedSpecYaml } from './helpers/rollout-fixtures.ts';
import { startRolloutServer, waitForRollout } from './helpers/rollout-server.ts';

async function viewerToken(request: (m: string, p: string, o?: any) => Promise<Response>): Promise<string> {
  const response = await request('POST', '/api/tokens', { json: { role: 'viewer', label: 'viewer' } });
  assert.equal(response.status, 201, await response.clone().text());
  return ((await response.json()) as { token: string }).token;
}

test('REST: start from YAML, progress with analysis values, pause/resume/promote, SSE events, bad input, roles', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;

  // Invalid spec: 400 naming the field, nothing stored.
  const bad = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml().replace('setWeight: 50', 'setWeight: 150'), contentType: 'application/yaml' });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as any).error.message, /steps\[0\]\.setWeight: must be ≤ 100/);
  const unknownVersion = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml({ version: '9' }), contentType: 'application/yaml' });
  assert.equal(unknownVersion.status, 400);
  assert.match(((await unknownVersion.json()) as any).error.message, /^candidateVersion: no version wine@9/);
  // An alias is a version in the CLI's NAME@REF, not here: said so, and which version it is ("no version wine@production … push it first").
  await s.request('PUT', '/api/models/wine/aliases/candidate', { json: { version: '2' } }).then((answer) => assert.equal(answer.status, 200, 'aliased'));
  const alias = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml({ version: 'candidate' }), contentType: 'application/yaml' });
  assert.equal(alias.status, 400);
  assert.equal(((await alias.json()) as any).error.message, 'candidateVersion: "candidate" is an alias, not a version: give the version itself (wine@candidate is 2)');
  const latest = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml({ version: 'latest' }), contentType: 'application/yaml' });
  assert.equal(((await latest.json()) as any).error.message, 'candidateVersion: "latest" is a reference, not a version: give the version itself');
  // A relative check whose series a model of this task never has (mse of a classifier): every measurement would be Inconclusive.
  const wrongCheck = await s.request('POST', '/api/rollouts', {
    body: stagedSpecYaml().replace('  - setWeight: 100\n', '  - analysis: {templates: [{templateName: fleetprune-relative-regression}]}\n  - setWeight: 100\n'),
    contentType: 'application/yaml',
  });
  assert.equal(wrongCheck.status, 400);
  assert.match(((await wrongCheck.json()) as any).error.message, /^steps\[3\]\.analysis metric "mse": wine@2: a relative mse check needs a regression model, and this is a classifier: check accuracy instead/);
  const wrongType = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml(), contentType: 'text/html' });
  assert.equal(wrongType.status, 415);
  assert.deepEqual(((await wrongType.json()) as any).error, {
    code: 'unsupported_media_type',
    message: 'body: send the spec with Content-Type application/json, application/yaml, application/x-yaml, text/yaml or text/plain (got text/html)',
  });
  assert.deepEqual(((await (await s.request('GET', '/api/rollouts')).json()) as any).rollouts, []);
  assert.equal(s.fleet.calls.length, 0);

  const viewer = await viewerToken(s.request);
  assert.equal((await s.request('POST', '/api/rollouts', { token: viewer, body: stagedSpecYaml(), contentType: 'application/yaml' })).status, 403);

  const started = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml(), contentType: 'application/yaml' });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };

  // A second rollout of the same model is refused while this one runs.
  const second = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 100 }] } });
  assert.equal(second.status, 409);

  // SSE: history first, then live states.
  const controller = new AbortController();
  const events = await fetch(`${s.baseUrl}/api/rollouts/${id}/events`, { headers: { authorization: `Bearer ${viewer}` }, signal: controller.signal });
  assert.equal(events.status, 200);
  let sse = '';
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of events.body as unknown as AsyncIterable<Uint8Array>) sse += decoder.decode(chunk);
    } catch {
      // aborted
    }
  })();

  // The analysis runs, then the indefinite pause step holds the rollout.
  const paused = await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 2);
  assert.equal(paused.weight, 50);
  assert.deepEqual(paused.steps.map((step: any) => step.status), ['done', 'done', 'current', 'pending']);
  assert.equal(paused.steps[1].measurements, 2);
  assert.equal(paused.analysisSeries['server-cpu'].length, 2);
  const measured = paused.decisions.find((d: any) => d.kind === 'measurement');
  assert.equal(measured.measurement.queries.query, 'fleetprune_process_cpu_user_seconds_total');
  assert.equal(measured.measurement.thresholds.successCondition, 'result[0] >= 0');
  assert.equal(measured.measurement.phase, 'Successful');

  // The list's summary follows the stored revision (summaries are cached per revision).
  const listed = async () => ((await (await s.request('GET', '/api/rollouts')).json()) as any).rollouts[0];
  const whilePaused = await listed();
  assert.deepEqual([whilePaused.id, whilePaused.phase, whilePaused.revision], [id, 'Paused', paused.revision]);

  assert.equal((await s.request('POST', `/api/rollouts/${id}/resume`, { token: viewer })).status, 403);
  assert.equal((await s.request('POST', '/api/rollouts/ro-nope/resume')).status, 404);
  assert.equal((await s.request('GET', '/api/rollouts/ro-nope')).status, 404);
  const noStream = await s.request('GET', '/api/rollouts/ro-nope/events');
  assert.equal(noStream.status, 404, 'an unknown rollout is a 404, not an empty event stream');
  assert.match(noStream.headers.get('content-type') ?? '', /json/);
  assert.equal((await s.request('POST', `/api/rollouts/${id}/promote?step=maybe`)).status, 400);
  const resumed = await s.request('POST', `/api/rollouts/${id}/resume`);
  assert.equal(resumed.status, 200, await resumed.clone().text());
  const done = await waitForRollout(s.request, id, (v) => v.phase === 'Completed');
  assert.equal(done.weight, 100);
  const afterResume = await listed();
  assert.equal(afterResume.phase, 'Completed');
  assert.ok(afterResume.revision > whilePaused.revision);
  assert.equal(done.outcome.status, 'production');
  assert.equal((await s.server.ctx.store.models.getAlias('wine', 'production'))?.version, '2');
  assert.equal((await s.request('POST', `/api/rollouts/${id}/pause`)).status, 409);

  // Rollback after full promotion: every device back to its baseline, 1 is production again.
  const rolledBack = await s.request('POST', `/api/rollouts/${id}/rollback?reason=${encodeURIComponent('customer complaints')}`);
  assert.equal(rolledBack.status, 200, await rolledBack.clone().text());
  await waitForRollout(s.request, id, (v) => v.phase === 'RolledBack' && v.pendingActions.length === 0);
  assert.equal((await listed()).currentStep, null, 'it had finished every step: no current step, not "activate everywhere"');
  assert.equal((await s.server.ctx.store.models.getAlias('wine', 'production'))?.version, '1');
  for (const device of s.fleet.devices.values()) assert.equal(device.active, '1');
  const audit = await s.server.ctx.store.audit.list({ limit: 100 });
  assert.deepEqual(audit.filter((e) => e.action.startsWith('rollout.')).map((e) => e.action).reverse(), ['rollout.start', 'rollout.resume', 'rollout.rollback']);

  // The stream carries the last state soon after the API shows it (not at once on a loaded machine).
  for (const deadline = Date.now() + 15_000; !/event: state\ndata: .*"phase":"RolledBack"/.test(sse) && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  controller.abort();
  await reading;
  assert.match(sse, /event: decision\ndata: .*"kind":"start"/);
  assert.match(sse, /event: state\ndata: .*"phase":"Completed"/);
  assert.match(sse, /event: state\ndata: .*"phase":"RolledBack"/);

  const leader = (await (await s.request('GET', '/api/rollouts/leader')).json()) as any;
  assert.equal(leader.isLeader, true);
  assert.equal(leader.engine, 'sqlite');
  const metrics = await (await fetch(`${s.baseUrl}/metrics`)).text();
  assert.match(metrics, new RegExp(`fleetprune_rollout_\\w+\\{[^}]*rollout="${id}"`));
});

test('rolling back a promoted rollout is refused once a newer rollout of the model promoted (it would undo it), and allowed again after that one is rolled back', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  await registerVersion(s.server.ctx.store, 'wine', '3');
  const promote = async (version: string) => {
    const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: version, steps: [{ setWeight: 100 }] } });
    assert.equal(started.status, 201, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    await waitForRollout(s.request, id, (v) => v.phase === 'Completed' && v.pendingActions.length === 0);
    return id;
  };
  const older = await promote('2');
  const newer = await promote('3');
  assert.equal((await s.server.ctx.store.models.getAlias('wine', 'production'))?.version, '3');

  const refused = await s.request('POST', `/api/rollouts/${older}/rollback`);
  assert.equal(refused.status, 409);
  assert.equal(((await refused.json()) as any).error.message, `rollout ${newer} of wine (Completed, 3) came after this one; rolling this one back would undo it: roll back ${newer} instead`);
  assert.equal((await s.server.ctx.store.models.getAlias('wine', 'production'))?.version, '3', 'nothing changed');
  for (const device of s.fleet.devices.values()) assert.equal(device.active, '3');
  // The detail says so before anyone clicks (the dashboard disables its Roll back with this tooltip).
  const refusedNow = async (id: string) => ((await (await s.request('GET', `/api/rollouts/${id}`)).json()) as { rollbackRefused: string | null }).rollbackRefused;
  assert.equal(await refusedNow(older), `rollout ${newer} of wine (Completed, 3) came after this one; rolling this one back would undo it: roll back ${newer} instead`);
  assert.equal(await refusedNow(newer), null);

  assert.equal((await s.request('POST', `/api/rollouts/${newer}/rollback`)).status, 200);
  await waitForRollout(s.request, newer, (v) => v.phase === 'RolledBack' && v.pendingActions.length === 0);
  for (const device of s.fleet.devices.values()) assert.equal(device.active, '2');
  // The newer one is undone: the older one holds production again and may be rolled back.
  assert.equal((await s.request('POST', `/api/rollouts/${older}/rollback`)).status, 200);
  await waitForRollout(s.request, older, (v) => v.phase === 'RolledBack' && v.pendingActions.length === 0);
  for (const device of s.fleet.devices.values()) assert.equal(device.active, '1');
  assert.equal((await s.server.ctx.store.models.getAlias('wine', 'production'))?.version, '1');
});

test("a rollout of a model waits for the previous rollout's revert to reach its devices (its baseline would be the version being reverted)", async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  await registerVersion(s.server.ctx.store, 'wine', '3');
  const start = (version: string) => s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: version, steps: [{ setWeight: 100 }] } });
  const started = await start('2');
  assert.equal(started.status, 201);
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Completed' && v.pendingActions.length === 0);
  let release!: () => void;
  s.fleet.revertsHeld = new Promise((resolve) => (release = resolve));
  assert.equal((await s.request('POST', `/api/rollouts/${id}/rollback`)).status, 200);
  await waitForRollout(s.request, id, (v) => v.phase === 'RolledBack' && v.pendingActions.length > 0);
  const early = await start('3');
  assert.equal(early.status, 409);
  assert.match(((await early.json()) as any).error.message, new RegExp(`^model wine's rollout ${id} \\(RolledBack\\) is still sending its devices their models \\(1 pending\\); start again once that is done$`));
  release();
  s.fleet.revertsHeld = undefined;
  await waitForRollout(s.request, id, (v) => v.pendingActions.length === 0);
  for (const device of s.fleet.devices.values()) assert.equal(device.active, '1');
  const later = await start('3');
  assert.equal(later.status, 201, await later.clone().text());
});

test('the candidate of a rollout under way cannot be retired (it would be assigned and made production anyway); after the abort it can', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused');
  const refused = await s.request('PATCH', '/api/models/wine/versions/2', { json: { retired: true } });
  assert.equal(refused.status, 409);
  assert.equal(((await refused.json()) as any).error.message, `wine@2 is the candidate of rollout ${id} of wine (Paused); finish, abort or roll it back first`);
  assert.equal((await s.server.ctx.store.models.getVersion('wine', '2'))?.retired, false, 'nothing changed');
  assert.equal((await s.request('POST', `/api/rollouts/${id}/abort`)).status, 200);
  await waitForRollout(s.request, id, (v) => v.phase === 'Aborted');
  const retired = await s.request('PATCH', '/api/models/wine/versions/2', { json: { retired: true } });
  assert.equal(retired.status, 200, await retired.text());
});

test('REST and gRPC: deeply nested or alias-broken specs are input errors, answered at once; nothing stored, the server lives on', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefg'.split('').map((name, i) => `${name}: &${name} [${Array(10).fill(`*${'abcdefg'[i]}`).join(', ')}]`)].join('\n');
  const cases = [
    { body: `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`, contentType: 'application/json', message: /^(body|spec): the spec is nested deeper than 64 levels$/ },
    { body: `${'['.repeat(50_000)}${']'.repeat(50_000)}`, contentType: 'application/yaml', message: /^(body|spec): the spec is nested deeper than 64 levels$/ },
    { body: 'model: *nope', contentType: 'application/yaml', message: /^(body|spec): not valid YAML or JSON: Unresolved alias .*nope$/ },
    { body: laughs, contentType: 'application/yaml', message: /^(body|spec): not valid YAML or JSON: Excessive alias count/ },
  ];
  for (const { body, contentType, message } of cases) {
    const started = Date.now();
    const response = await s.request('POST', '/api/rollouts', { body, contentType });
    const json = (await response.json()) as any;
    assert.equal(response.status, 400, JSON.stringify(json));
    assert.equal(json.error.code, 'bad_request');
    assert.match(json.error.message, message);
    await assert.rejects(grpc.call('StartRollout', { spec: body }), (error: any) => error.code === status.INVALID_ARGUMENT && message.test(error.details));
    assert.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
  }
  assert.deepEqual(((await (await s.request('GET', '/api/rollouts')).json()) as any).rollouts, []);
  assert.equal(s.fleet.calls.length, 0);
  assert.equal((await fetch(`${s.baseUrl}/healthz`)).status, 200);
});

test('gRPC and CLI: start, list, status, watch to the end, promote, abort; errors name the field', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-rollout-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const specFile = join(dir, 'rollout.yaml');
  await writeFile(specFile, stagedSpecYaml());
  const badFile = join(dir, 'bad.yaml');
  await writeFile(badFile, stagedSpecYaml().replace('count: 2', 'count: two'));
  const connection = ['--server', s.grpcAddress, '--token', ADMIN_TOKEN];

  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  await assert.rejects(grpc.call('StartRollout', { spec: 'model: wine\ncandidateVersion: "2"\nsteps: []' }), (error: any) => error.code === 3 && /steps: must list at least one step/.test(error.details));
  await assert.rejects(grpc.call('GetRollout', { id: 'ro-missing' }), (error: any) => error.code === 5);

  const bad = await runCli(['rollout', 'start', '-f', badFile, ...connection]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^fleetprune: spec: invalid rollout spec: steps\[1\]\.analysis\.metrics\[0\]\.count: .*\n$/);
  assert.equal((await grpc.call('ListRollouts', {})).rollouts.length, 0);

  const started = await runCli(['rollout', 'start', '-f', specFile, ...connection]);
  assert.equal(started.code, 0, started.stderr);
  const id = started.stdout.trim();
  const list = await runCli(['rollout', 'list', ...connection]);
  assert.match(list.stdout, new RegExp(`^${id}  wine 2  `, 'm'));
  assert.match((await runCli(['rollout', 'list', '--limit', '1', ...connection])).stdout, new RegExp(`^${id}  wine 2  `, 'm'));
  for (const limit of ['-1', '0', '1001']) {
    const refused = await runCli(['rollout', 'list', '--limit', limit, ...connection]);
    assert.equal(refused.code, 2, limit);
    assert.match(refused.stderr, new RegExp(`option '--limit <n>' argument '${limit}' is invalid\\. must be a whole number from 1 to 1000`), limit);
  }

  await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 2);
  // Only abort and rollback take a reason and only promote a step, over gRPC as over REST; the rollout stays where it is.
  assert.equal((await s.request('POST', `/api/rollouts/${id}/resume?reason=because`)).status, 400);
  for (const method of ['PauseRollout', 'ResumeRollout', 'PromoteRollout']) {
    await assert.rejects(grpc.call(method, { id, reason: 'because' }), (error: any) => error.code === 3 && /^reason: only AbortRollout and RollbackRollout/.test(error.details), method);
  }
  await assert.rejects(grpc.call('ResumeRollout', { id, step: true }), (error: any) => error.code === 3 && /^step: only PromoteRollout/.test(error.details));
  const held = (await grpc.call('GetRollout', { id })).rollout;
  assert.deepEqual([held.phase, held.step_index], ['Paused', 2]);
  const status = await runCli(['rollout', 'status', id, ...connection]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /✓ 2\. analysis of server-cpu \(2 measurements\)/);
  assert.match(status.stdout, /▶ 3\. pause until resumed/);
  assert.match(status.stdout, /measurement  Successful/);
  // The detail's device states: as many as asked for (gRPC and CLI), the counts cover all.
  const few = JSON.parse((await grpc.call('GetRollout', { id, device_states: 1 })).detail_json);
  assert.equal(few.deviceStates.length, 1);
  assert.ok(few.devices.total > 1);
  await assert.rejects(grpc.call('GetRollout', { id, device_states: 2_000_000 }), (error: any) => error.code === 3 && /^device_states: /.test(error.details));
  const statusJson = await runCli(['rollout', 'status', id, '--json', '--devices', '2', ...connection]);
  assert.equal(statusJson.code, 0, statusJson.stderr);
  assert.equal(JSON.parse(statusJson.stdout).deviceStates.length, 2);
  assert.equal((await (await s.request('GET', `/api/rollouts/${id}?devices=1`)).json() as any).deviceStates.length, 1);
  assert.equal((await s.request('GET', `/api/rollouts/${id}?devices=-1`)).status, 400);

  const watching = runCli(['rollout', 'watch', id, ...connection]);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const promoted = await runCli(['rollout', 'promote', id, '--step', ...connection]);
  assert.equal(promoted.code, 0, promoted.stderr);
  const watched = await watching;
  assert.equal(watched.code, 0, watched.stderr);
  assert.match(watched.stdout, /step 1  start/);
  assert.match(watched.stdout, /Completed/);

  const viewer = ((await (await s.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'v' } })).json()) as { token: string }).token;
  const denied = await runCli(['rollout', 'abort', id, '--server', s.grpcAddress, '--token', viewer]);
  assert.equal(denied.code, 2);
  assert.match(denied.stderr, /^fleetprune: permission denied/);
  const unknown = await runCli(['rollout', 'pause', 'ro-nope', ...connection]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^fleetprune: no rollout ro-nope\n$/);

  // A new rollout of 3 aborted at once: devices reverted, watch exits 1 naming the phase.
  await registerVersion(s.server.ctx.store, 'wine', '3');
  const second = await grpc.call('StartRollout', { spec: stagedSpecYaml({ version: '3' }) });
  const aborted = await runCli(['rollout', 'abort', second.id, '--reason', 'wrong build', ...connection]);
  assert.equal(aborted.code, 0, aborted.stderr);
  assert.match(aborted.stdout, /Aborted/);
  const watchedAbort = await runCli(['rollout', 'watch', second.id, ...connection]);
  assert.equal(watchedAbort.code, 1);
  assert.match(watchedAbort.stderr, /ended Aborted/);
  const leader = await grpc.call('GetRolloutLeader', {});
  assert.equal(leader.is_leader, true);
});

test('a revoked token stops its open streams at once: the SSE response ends, the gRPC watch fails UNAUTHENTICATED', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const created = (await (await s.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'watcher' } })).json()) as { token: string; record: { id: string } };
  const started = await s.request('POST', '/api/rollouts', { body: stagedSpecYaml(), contentType: 'application/yaml' });
  const { id } = (await started.json()) as { id: string };

  const events = await fetch(`${s.baseUrl}/api/rollouts/${id}/events`, { headers: { authorization: `Bearer ${created.token}` } });
  assert.equal(events.status, 200);
  let received = '';
  const ended = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of events.body as unknown as AsyncIterable<Uint8Array>) received += decoder.decode(chunk, { stream: true });
    return 'ended';
  })().catch(() => 'ended');
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', created.token);
  t.after(() => grpc.close());
  const watch = grpc.open('WatchRollout', { id });
  const watchFailed = new Promise<number>((resolve) => watch.on('error', (error: { code: number }) => resolve(error.code)));
  await new Promise((resolve) => watch.once('data', resolve));
  assert.ok(s.server.ctx.tokens.revocations.watching >= 2, 'both streams watch their token');

  assert.equal((await s.request('DELETE', `/api/tokens/${created.record.id}`)).status, 204);
  const timeout = <T,>(promise: Promise<T>) => Promise.race([promise, new Promise<string>((resolve) => setTimeout(() => resolve('still open after 3 s'), 3000))]);
  assert.equal(await timeout(ended), 'ended');
  // Its last event says why it ended.
  assert.ok(received.endsWith('event: error\ndata: {"error":{"code":"unauthenticated","message":"the token was revoked"}}\n\n'), received.slice(-300));
  assert.equal(await timeout(watchFailed), 16, 'UNAUTHENTICATED');
  assert.equal(s.server.ctx.tokens.revocations.watching, 0, 'nothing left watching');
  assert.equal((await fetch(`${s.baseUrl}/api/rollouts/${id}`, { headers: { authorization: `Bearer ${created.token}` } })).status, 401);
});
