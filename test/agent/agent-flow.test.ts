import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { keyId } from '../../shared/artifact/signing-keys.ts';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { connect } from 'node:net';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test } from 'node:test';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isBenchmarkFor, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { blockStateFile, restoreStateFile } from './blocked-state-file.ts';
import { makeFifo, releaseFifo, settlesWithin } from './fifo.ts';
import { reportId } from '../../agent/report-ids.ts';
import { AssignmentReportSchema } from '../../shared/protocol/payloads.ts';
import { reportsTopic } from '../../shared/protocol/topics.ts';
import { firstNonFiniteRow } from '../../agent/predict-rows.ts';
import { OrtSessionCache, type SessionCache } from '../../agent/session-cache.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

test('candidate → verified download → side-by-side benchmark report; activation; rollback from disk without download', async (t) => {
  const { agent, predict, url } = await startAgent(t, world, 'flow-1', { shadowFraction: 1, heartbeatIntervalMs: 200 });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).status, 503, 'no active model yet');

  const first = await world.assign('flow-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);

  const candidate = await world.assign('flow-1', world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  const report = (await world.waitForReport(isBenchmarkFor(world.v2.id, 'flow-1'))) as BenchmarkReport;
  assert.equal(report.deviceId, 'flow-1');
  assert.equal(report.assignmentId, candidate.id);
  assert.equal(report.holdout.rows, 400);
  assert.equal(report.active?.sha256, world.v1.id);
  assert.equal(report.active?.role, 'active');
  assert.equal(report.candidate.sha256, world.v2.id);
  for (const side of [report.active!, report.candidate]) {
    assert.ok('accuracy' in side.score && side.score.accuracy >= 0 && side.score.accuracy <= 1 && side.score.total === 400);
    assert.ok(side.latencyMs.p50 > 0 && side.latencyMs.p50 <= side.latencyMs.p95 && side.latencyMs.p95 <= side.latencyMs.p99);
    assert.ok(side.throughputRowsPerSecond > 0 && side.loadTimeMs > 0 && side.batchSize === 64);
  }
  assert.deepEqual(agent.slots.candidate?.sha256, world.v2.id);

  // Serving stays on the active model; the candidate is shadow-run (fraction 1).
  const served = await predict({ rows: [{ f0: 1, f1: 2, f2: 3, f3: 4, f4: 5, f5: 6, f6: 7 }] });
  assert.equal(served.status, 200);
  assert.equal(served.json.sha256, world.v1.id);
  await waitFor(async () => (await (await fetch(`${url}/metrics`)).text()).includes('fleetprune_agent_shadow_runs_total{version="2"} 1'), 3000, 'shadow run recorded, by candidate version');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /fleetprune_agent_shadow_latency_seconds_count 1/);
  assert.match(metrics, /fleetprune_agent_shadow_agreements_total\{version="2"\} [01]/);
  // The slots' models, with the fleet label the server puts on this device's series: its signing key's id.
  const fleet = keyId(world.publicKey);
  assert.match(metrics, new RegExp(`^fleetprune_agent_model_info\\{slot="active",model="${world.v1.manifest.name}",version="1",fleet="${fleet}"\\} 1$`, 'm'));
  assert.match(metrics, new RegExp(`^fleetprune_agent_model_info\\{slot="candidate",model="${world.v2.manifest.name}",version="2",fleet="${fleet}"\\} 1$`, 'm'));
  // The serving latency is by the model and version that answered.
  const servedCount = (text: string, version: string) => Number(new RegExp(`^fleetprune_agent_served_latency_seconds_count\\{model="${world.v1.manifest.name}",version="${version}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? -1);
  assert.equal(servedCount(metrics, '1'), 1);
  assert.equal(servedCount(metrics, '2'), -1, 'the candidate served nothing');
  // And the unlabelled histogram of agents before it, which rules written for them read.
  assert.match(metrics, /^fleetprune_agent_predict_latency_seconds_count 1$/m);

  const activation = await world.assign('flow-1', world.v2, 'active');
  await world.waitForReport(isOutcome(activation.id, 'activated'));
  assert.equal(agent.slots.active?.sha256, world.v2.id);
  assert.equal(agent.slots.previous?.sha256, world.v1.id);
  assert.equal(agent.slots.candidate, null);
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v2.id);
  const afterPromotion = await (await fetch(`${url}/metrics`)).text();
  assert.equal(servedCount(afterPromotion, '2'), 1, 'the request after the promotion is credited to version 2');
  assert.equal(servedCount(afterPromotion, '1'), 1, "version 1's series stays: it is the previous model, a rollback's target");
  assert.doesNotMatch(afterPromotion, /fleetprune_agent_shadow_(runs|agreements)_total\{/, 'no shadow series of a candidate gone');
  assert.doesNotMatch(afterPromotion, /fleetprune_agent_shadow_latency_seconds_count [1-9]/, 'the shadow latency (no version label) starts afresh with the next candidate');

  // Rollback by fleet command: from disk, no download.
  const blobRequests = world.http.blobRequests().length;
  const command = await publishFleetCommand(world.harness.broker, 'rollback', { labels: { site: 'osaka' }, deviceIds: ['flow-1'] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(command.id, 'rolled-back'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.equal(agent.slots.previous?.sha256, world.v2.id);
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);

  // Assigning the previous version as active is a rollback too.
  const back = await world.assign('flow-1', world.v2, 'active', { revert: true });
  await world.waitForReport(isOutcome(back.id, 'rolled-back'));
  assert.equal(agent.slots.active?.sha256, world.v2.id);
  assert.equal(world.http.blobRequests().length, blobRequests, 'rollbacks downloaded nothing');

  // A fleet command empties the candidate slot (v1 is the previous model now, v3 a fresh candidate).
  const v3 = await world.assign('flow-1', world.v3, 'candidate');
  await world.waitForReport(isOutcome(v3.id, 'installed'));
  const slotsWithV3 = agent.slots;
  assert.equal(slotsWithV3.candidate?.sha256, world.v3.id);
  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: ['flow-1'] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'));
  assert.equal(agent.slots.candidate, null);
  // A command for other devices is ignored.
  const other = await publishFleetCommand(world.harness.broker, 'rollback', { labels: { site: 'kyoto' } }, { privateKey: world.privateKey });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(world.harness.ingest.reports.some((r) => r.assignmentId === other.id), false);
  assert.equal(agent.slots.active?.sha256, world.v2.id);

  // Status is retained online; heartbeats carry the slots and the serving counters.
  await waitFor(() => world.harness.ingest.statuses.get('flow-1')?.online === true, 3000, 'online status');
  await waitFor(() => (world.harness.ingest.telemetry.get('flow-1')?.serving?.predictions ?? 0) >= 3 && world.harness.ingest.telemetry.get('flow-1')?.candidate === null, 3000, 'heartbeat');
  const heartbeat = world.harness.ingest.telemetry.get('flow-1')!;
  assert.equal(heartbeat.active?.sha256, world.v2.id);
  assert.equal(heartbeat.previous?.sha256, world.v1.id);
  assert.equal(heartbeat.serving?.shadowRows, 1);
  assert.ok(heartbeat.rssBytes > 0 && heartbeat.uptimeSeconds > 0);
  assert.equal(heartbeat.intervalSeconds, 0.2, 'the heartbeat says how often the agent sends one (the server marks a device silent for several offline)');
  // And the number of the newest assignment taken: v3's (a server whose store is older knows by it that the device moved on).
  assert.equal(heartbeat.assignmentSeq, v3.seq);
});

test('/v1/predict takes named features and arrays; bad input is a 400 with a clear message', async (t) => {
  const { agent, predict, url } = await startAgent(t, world, 'predict-1');
  const assignment = await world.assign('predict-1', world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  assert.equal(agent.slots.active?.version, '1');

  const row = [10, -20, 30.5, 0, 1, 2, 3];
  const named = Object.fromEntries(world.v1.manifest.features.map((name, i) => [name, row[i]]));
  const byArray = await predict({ rows: [row, row] });
  const byName = await predict({ rows: [named] });
  assert.equal(byArray.status, 200);
  assert.equal(byArray.json.predictions.length, 2);
  assert.deepEqual(byName.json.predictions[0], byArray.json.predictions[0]);
  const prediction = byArray.json.predictions[0];
  assert.ok(['a', 'b', 'c'].includes(prediction.label));
  assert.equal(prediction.probabilities.length, 3);
  assert.ok(Math.abs(prediction.probabilities.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-4);

  const bad: [unknown, RegExp][] = [
    ['{"rows": [1, 2', /not valid JSON/],
    [{ rows: [[1, 2, 3]] }, /expected 7 values/],
    [{ rows: [{ f0: 1 }] }, /missing feature "f1"/],
    [{ rows: [{ ...named, bogus: 1 }] }, /unknown feature "bogus"/],
    [{ rows: [[1, 2, 3, 4, 5, 6, 'x']] }, /must be a finite number/],
    [{ rows: [[1, 2, 3, 4, 5, 6, 1e39]] }, /rows\[0\]\[6\] \(f6\): must be a finite number within the float32 range/],
    [{ rows: [{ ...named, f2: -1e39 }] }, /rows\[0\]\.f2: must be a finite number within the float32 range/],
    [{ rows: [] }, /non-empty array/],
    [{ data: [] }, /\{"rows": \[\.\.\.\]\}/],
    [[row], /\{"rows": \[\.\.\.\]\}/],
    [{ rows: ['nope'] }, /array of numbers or an object/],
  ];
  for (const [body, message] of bad) {
    const response = await predict(body);
    assert.equal(response.status, 400, JSON.stringify(body));
    assert.match(response.json.error, message);
    assert.doesNotMatch(response.json.error, /\n\s+at /, 'no stack trace');
  }
  const notJson = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'rows' });
  assert.equal(notJson.status, 415);
  assert.match(((await notJson.json()) as { error: string }).error, /Content-Type: application\/json/);
  const huge = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ rows: [[1, 2, 3, 4, 5, 6, 'x'.repeat(2_000_000)]] }) });
  assert.equal(huge.status, 413);
  const wrongMethod = await fetch(`${url}/v1/predict`);
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get('allow'), 'POST');
  assert.match(((await wrongMethod.json()) as { error: string }).error, /^GET is not allowed on \/v1\/predict; use POST$/);
  assert.equal((await fetch(`${url}/v1/elsewhere`)).status, 404);

  // A key given twice (JSON.parse would keep the last), and JSON that is not an object.
  const twice = async (text: string) => {
    const response = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text });
    return { status: response.status, error: ((await response.json()) as { error: string }).error };
  };
  assert.deepEqual(await twice(`{"rows":[${JSON.stringify(row)}],"rows":[${JSON.stringify(row)}]}`), { status: 400, error: 'rows: given twice in one object; send each key once' });
  const namedTwice = JSON.stringify({ rows: [named] }).replace('{"f0":', '{"f0":"junk","f0":');
  assert.deepEqual(await twice(namedTwice), { status: 400, error: 'rows[0].f0: given twice in one object; send each key once' });
  // Whatever the last value is: it was its own problem that was said ("rows: must be a non-empty array").
  assert.deepEqual(await twice(`{"rows":[${JSON.stringify(row)}],"rows":[]}`), { status: 400, error: 'rows: given twice in one object; send each key once' });
  assert.deepEqual(await twice(`{"rows":[${JSON.stringify(row)}],"rows":[[1,2]]}`), { status: 400, error: 'rows: given twice in one object; send each key once' });
  // JSON is UTF-8: body-parser would decode UTF-16, and the duplicate-key check read it as UTF-8 and saw nothing.
  const utf16 = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json; charset=utf-16le' }, body: Buffer.from(namedTwice, 'utf16le') });
  assert.deepEqual([utf16.status, ((await utf16.json()) as { error: string }).error], [415, 'unsupported charset "UTF-16LE"; send the rows as UTF-8 JSON']);
  const utf8Spelled = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json; charset=UTF8' }, body: JSON.stringify({ rows: [named] }) });
  assert.equal(utf8Spelled.status, 200, 'utf8 is UTF-8 too');
  for (const scalar of ['null', '42', '"x"', 'true']) assert.deepEqual(await twice(scalar), { status: 400, error: 'the body must be a JSON object {"rows": [...]}' });

  // A body declared far over the limit and never sent is refused at once, and the connection closed.
  const predictCount = async () => Number(/fleetprune_agent_predict_requests_total\{status="400"\} (\d+)/.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? 0);
  const { port } = new URL(url);
  // `open`: the request is written without ending the connection's sending side (the answer to a
  // compressed body comes after its inflation, which a half-closed connection would not wait for).
  const exchange = (request: string | Buffer, open = false) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1');
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString('latin1')));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      if (open) socket.write(request);
      else socket.end(request);
    });
  const declared = await exchange('POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{');
  assert.match(declared, /^HTTP\/1\.1 413 /);
  assert.match(declared, /connection: close/i);
  assert.match(declared, /larger than the 1048576-byte limit/);
  // Only /v1/predict reads a body: other paths answer as they always do, and the predict counters do not move.
  const before400 = await predictCount();
  const health = await exchange('GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n{bad');
  assert.match(health, /^HTTP\/1\.1 200 /);
  const elsewhere = await exchange('DELETE /nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n{bad');
  assert.match(elsewhere, /^HTTP\/1\.1 404 /);
  assert.equal(await predictCount(), before400);
  // An empty body is named as such, whether its length is declared 0 or not declared at all.
  for (const headers of [{ 'Content-Type': 'application/json', 'Content-Length': '0' }, { 'Content-Type': 'application/json' }]) {
    const empty = await exchange(`POST /v1/predict HTTP/1.1\r\nHost: device\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    assert.match(empty, /^HTTP\/1\.1 400 /, JSON.stringify(headers));
    assert.match(empty, /\{"error":"the body is empty; send \{\\"rows\\": \[\.\.\.\]\} as JSON \(Content-Type: application\/json\)"\}$/);
  }
  // So is one sent chunked with no bytes, or compressed to nothing: not called a body of the wrong shape.
  const gzipped = gzipSync(Buffer.alloc(0));
  for (const request of [
    'POST /v1/predict HTTP/1.1\r\nHost: device\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    Buffer.concat([Buffer.from(`POST /v1/predict HTTP/1.1\r\nHost: device\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: ${gzipped.length}\r\n\r\n`), gzipped]),
  ]) {
    const empty = await exchange(request, true);
    assert.match(empty, /^HTTP\/1\.1 400 /, request.toString().slice(0, 120));
    assert.match(empty, /"the body is empty; send/, request.toString().slice(0, 120));
  }
});

test('a model output holding NaN or ±Infinity is found (the API answers 422 rather than null probabilities)', () => {
  assert.equal(firstNonFiniteRow([[0.2, 0.8], [1, 0]]), -1);
  assert.equal(firstNonFiniteRow([[0.2, 0.8], [Number.NaN, 0.5], [Infinity, 0]]), 1);
  assert.equal(firstNonFiniteRow([[0.2, 0.8], [0, -Infinity]]), 1);
});

/** v1 copied, edited by `edit` (and its model.onnx replaced by `onnx`), re-signed with the server's key and served. */
async function forgeSigned(name: string, edit: (manifest: any) => void, onnx?: Buffer): Promise<TestArtifact> {
  const dir = join(world.dir, 'forged', name);
  await cp(world.v1.dir, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  if (onnx) {
    await writeFile(join(dir, 'model.onnx'), onnx);
    manifest.files['model.onnx'] = { sha256: sha256Hex(onnx), bytes: onnx.length };
  }
  edit(manifest);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(signManifest(manifest, world.privateKey), null, 2));
  const { id, manifest: served } = await world.http.addArtifact(dir);
  return { id, version: manifest.version, dir, manifest: served };
}

test('a signed model that cannot run (not ONNX, or not the width its manifest says) is refused before any slot changes; restarts still work', async (t) => {
  const notOnnx = await forgeSigned('not-onnx', (manifest) => (manifest.version = 'not-onnx'), Buffer.from('this is not an onnx model '.repeat(8)));
  const wider = await forgeSigned('wider', (manifest) => {
    manifest.version = 'wider';
    // A manifest that agrees with itself (one more input, and the first layer's weights for it), not with its model.onnx.
    manifest.features = [...manifest.features, 'f7'];
    const first = manifest.architecture.layers[0];
    manifest.architecture.inputs += 1;
    manifest.architecture.params += first;
    manifest.architecture.flopsPerSample += 2 * first;
  });
  const config = await world.config('unrunnable-1');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-unrunnable-'));
  // Shadow runs on: the candidate would get a session of its own.
  const first = await startAgent(t, world, 'unrunnable-1', { config, dataDir, shadowFraction: 1 });
  const ok = await world.assign('unrunnable-1', world.v1, 'active');
  await world.waitForReport(isOutcome(ok.id, 'activated'));

  const refusals: [TestArtifact, 'active' | 'candidate', RegExp][] = [
    [notOnnx, 'active', /^the model cannot run: .*(protobuf|parsing|load)/i],
    [notOnnx, 'candidate', /^the model cannot run: /],
    [wider, 'active', /^the model cannot run: model\.onnx takes "features" of shape \[batch, 7\], but the manifest lists 8 features$/],
  ];
  for (const [artifact, role, reason] of refusals) {
    const assignment = await world.assign('unrunnable-1', artifact, role);
    const report = await world.waitForReport(isOutcome(assignment.id, 'refused'));
    assert.match(report.kind === 'assignment' ? report.reason ?? '' : '', reason, `${artifact.version} as ${role}`);
  }
  await first.agent.idle();
  assert.deepEqual(first.agent.slots, { active: { model: world.v1.manifest.name, version: world.v1.version, sha256: world.v1.id }, candidate: null, previous: null });
  assert.equal(JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')).pending, null);
  assert.deepEqual(await readdir(join(dataDir, 'models')), [world.v1.id], 'refused models are removed');
  assert.equal((await first.predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);

  await first.stop();
  const second = await startAgent(t, world, 'unrunnable-1', { config, dataDir, shadowFraction: 1 });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after both agents have stopped
  assert.equal((await second.predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);
});

test('a corrupt state file is set aside: the agent starts, keeps its models, and the retained assignment restores the active one without a download', async (t) => {
  const config = await world.config('corrupt-1');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-corrupt-'));
  const first = await startAgent(t, world, 'corrupt-1', { config, dataDir });
  const assignment = await world.assign('corrupt-1', world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  await first.stop();
  await writeFile(join(first.dataDir, 'state.json'), '{"schema": 1, "active": {"model": tru');

  const blobRequestsBefore = world.http.blobRequests().length;
  const second = await startAgent(t, world, 'corrupt-1', { config, dataDir });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after both agents have stopped
  await waitFor(() => second.agent.slots.active?.sha256 === world.v1.id, 15_000, 'v1 active again');
  // The slot is committed first, then the loaded model is swapped in: wait for it to serve.
  await waitFor(async () => (await second.predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256 === world.v1.id, 5_000, 'v1 served again');
  assert.deepEqual(world.http.blobRequests().slice(blobRequestsBefore), [], 'restored from disk, not downloaded');
  const files = await readdir(first.dataDir);
  assert.equal(files.filter((name) => /^state\.json\.corrupt-/.test(name)).length, 1, files.join(', '));
});

test('a state file a newer agent wrote (a downgrade) stops the start with one line naming it, and is left as it is: not set aside as corrupt', async (t) => {
  const config = await world.config('newer-state-1');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-newer-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const first = await startAgent(t, world, 'newer-state-1', { config, dataDir });
  const assignment = await world.assign('newer-state-1', world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  await first.stop();
  const statePath = join(dataDir, 'state.json');
  const newer = JSON.stringify({ ...JSON.parse(await readFile(statePath, 'utf8')), schema: 2, somethingNew: true });
  await writeFile(statePath, newer);

  await assert.rejects(startAgent(t, world, 'newer-state-1', { config, dataDir }), (error: Error) => {
    assert.equal(error.name, 'UserError');
    assert.equal(error.message, `${statePath} was written by a newer agent (state format 2; this agent reads 1): upgrade the agent, or start it on an empty --data-dir (left as it is)`);
    return true;
  });
  assert.equal(await readFile(statePath, 'utf8'), newer, 'the file is untouched');
  assert.deepEqual((await readdir(dataDir)).filter((name) => name.startsWith('state.json.corrupt-')), [], 'not set aside');
  // The agent's own format back: it starts on it, v1 active.
  await writeFile(statePath, JSON.stringify({ ...JSON.parse(newer), schema: 1, somethingNew: undefined }));
  const third = await startAgent(t, world, 'newer-state-1', { config, dataDir });
  assert.equal(third.agent.slots.active?.sha256, world.v1.id);
  await third.stop();
});

test('a corrupt state file whose retained assignment is a candidate: the model the device served stays on disk through the candidate\'s install, and is restored from it', async (t) => {
  const config = await world.config('corrupt-2');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-corrupt-'));
  const first = await startAgent(t, world, 'corrupt-2', { config, dataDir, holdout: undefined });
  await world.waitForReport(isOutcome((await world.assign('corrupt-2', world.v1, 'active')).id, 'activated'));
  await world.waitForReport(isOutcome((await world.assign('corrupt-2', world.v2, 'candidate')).id, 'installed'));
  await first.stop();
  await writeFile(join(dataDir, 'state.json'), '{"schema": 1, "active": ');

  const second = await startAgent(t, world, 'corrupt-2', { config, dataDir, holdout: undefined });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after both agents have stopped
  // The retained assignment installs the candidate; before, its garbage collection removed v1, the model the device served.
  await waitFor(() => second.agent.slots.candidate?.sha256 === world.v2.id, 15_000, 'v2 the candidate again');
  await second.agent.idle();
  assert.deepEqual((await readdir(join(dataDir, 'models'))).sort(), [world.v1.id, world.v2.id].sort());
  const blobRequestsBefore = world.http.blobRequests().length;
  await world.waitForReport(isOutcome((await world.assign('corrupt-2', world.v1, 'active')).id, 'activated'));
  assert.deepEqual(world.http.blobRequests().slice(blobRequestsBefore), [], 'restored from disk, not downloaded');
  // An active model again: what no slot holds goes at the next collection, as before.
  await world.waitForReport(isOutcome((await world.assign('corrupt-2', world.v3, 'candidate')).id, 'installed'));
  await second.agent.idle();
  assert.deepEqual((await readdir(join(dataDir, 'models'))).sort(), [world.v1.id, world.v3.id].sort());
});

test('a state.json that is a FIFO is set aside like a corrupt one: the agent starts at once (it waited for a writer for good)', async (t) => {
  const config = await world.config('fifo-state-1');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-fifo-state-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  makeFifo(join(dataDir, 'state.json'));
  const { logger, lines } = recordingLogger();
  const outcome = await settlesWithin(startAgent(t, world, 'fifo-state-1', { config, dataDir, logger }), 5000, () => releaseFifo(join(dataDir, 'state.json')));
  assert.notEqual(outcome, 'blocked', 'the agent is still starting 5 s later');
  assert.ok(outcome !== 'blocked' && 'value' in outcome, String(outcome !== 'blocked' && 'error' in outcome && outcome.error));
  assert.deepEqual(outcome.value.agent.slots, { active: null, candidate: null, previous: null });
  const files = await readdir(dataDir);
  assert.equal(files.filter((name) => /^state\.json\.corrupt-/.test(name)).length, 1, files.join(', '));
  const logged = lines.find((line) => /state file is corrupt/.test(line.msg));
  assert.equal(logged?.level, 50, 'logged at error level');
  assert.match(logged?.err, /state\.json: not a regular file$/);
});

test('an outbox entry for a topic this device does not publish is removed and logged at error level; the report behind it is delivered', async (t) => {
  const deviceId = 'bad-topic-1';
  const config = await world.config(deviceId);
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-bad-topic-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const report = AssignmentReportSchema.parse({
    schema: 1,
    id: reportId(deviceId, 'assign-bad-topic-1', 'assignment:refused'),
    kind: 'assignment',
    deviceId,
    createdAt: new Date().toISOString(),
    assignmentId: 'assign-bad-topic-1',
    outcome: 'refused',
    role: 'candidate',
    model: world.v1.manifest.name,
    version: world.v1.version,
    sha256: world.v1.id,
    reason: 'left in the outbox by an earlier run',
  });
  const outbox = join(dataDir, 'outbox');
  await mkdir(outbox);
  // Oldest first: the bad ones are met first, and used to stay first for good.
  const bad = [
    ['000000000000001-000000-wildcard.json', 'fleetprune/#'],
    ['000000000000001-000001-other-device.json', reportsTopic('someone-else')],
  ] as const;
  for (const [name, topic] of bad) await writeFile(join(outbox, name), JSON.stringify({ topic, payload: JSON.stringify({ ...report, id: `x-${name.slice(0, 22)}` }) }));
  await writeFile(join(outbox, '000000000000002-000000-good.json'), JSON.stringify({ topic: reportsTopic(deviceId), payload: JSON.stringify(report) }));
  const { logger, lines } = recordingLogger();
  await startAgent(t, world, deviceId, { config, dataDir, logger });
  await world.waitForReport((received) => received.id === report.id, 5000);
  await waitFor(async () => (await readdir(outbox)).length === 0, 5000, 'the outbox emptied');
  const removed = lines.filter((line) => line.msg === 'outbox entry for a topic this device does not publish removed');
  assert.deepEqual(removed.map((line) => [line.level, line.topic]), bad.map(([, topic]) => [50, topic]));
  assert.equal(world.harness.ingest.reports.filter((received) => received.deviceId === deviceId).length, 1, 'only the good report arrived');
});

test('partial downloads untouched for a week are removed at start and while running; recent ones are kept for resuming', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-stale-'));
  await mkdir(join(dataDir, 'downloads'), { recursive: true });
  const stale = join(dataDir, 'downloads', `${'a'.repeat(64)}.part`);
  const recent = join(dataDir, 'downloads', `${'b'.repeat(64)}.part`);
  await writeFile(stale, 'given up');
  await writeFile(recent, 'still resuming');
  const eightDaysAgo = new Date(Date.now() - 8 * 24 * 3_600_000);
  await utimes(stale, eightDaysAgo, eightDaysAgo);
  await startAgent(t, world, 'stale-1', { dataDir, staleDownloadSweepMs: 100 });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after the agent has stopped
  assert.deepEqual((await readdir(join(dataDir, 'downloads'))).sort(), [`${'b'.repeat(64)}.part`]);

  // Running for months: a download given up after the start goes at the next sweep.
  await utimes(recent, eightDaysAgo, eightDaysAgo);
  await waitFor(async () => (await readdir(join(dataDir, 'downloads'))).length === 0, 5000, 'the sweep removing the stale download');
});

test('a new download removes the partial downloads of assignments it replaced (they would hold the disk it needs)', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-replaced-'));
  await mkdir(join(dataDir, 'downloads'), { recursive: true });
  const replaced = join(dataDir, 'downloads', `${'c'.repeat(64)}.part`);
  await writeFile(replaced, 'a download an assignment since replaced left behind');
  await startAgent(t, world, 'replaced-1', { dataDir });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after the agent has stopped
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), [`${'c'.repeat(64)}.part`], 'a recent partial download is kept while nothing else downloads');
  const assignment = await world.assign('replaced-1', world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), [], 'the replaced download is gone, and the finished one was moved into the store');
});

test('an assignment whose handling failed on the device (its state file unwritable) is taken again when it is delivered again', async (t) => {
  const { dataDir } = await startAgent(t, world, 'disk-1', { assignmentResyncMs: 500 });
  const first = await world.assign('disk-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  // state.json cannot be replaced now (a directory with a file where the file goes): like a full disk.
  const stateFile = join(dataDir, 'state.json');
  const saved = (await blockStateFile(stateFile))!;
  const second = await world.assign('disk-1', world.v2, 'candidate');
  await new Promise((resolve) => setTimeout(resolve, 1500)); // fails, and fails again at each resubscription
  assert.equal(world.harness.ingest.reports.some((report) => report.kind === 'assignment' && report.assignmentId === second.id), false);
  // The disk has room again: the next delivery of the retained assignment is handled.
  await restoreStateFile(stateFile, saved);
  await world.waitForReport(isOutcome(second.id, 'installed'), 15_000);
});

test('a tampered model, a bad signature, a wrong sha256 or a foreign URL is refused, reported and never loaded', async (t) => {
  const { agent, dataDir, predict } = await startAgent(t, world, 'refuse-1');
  const ok = await world.assign('refuse-1', world.v1, 'active');
  await world.waitForReport(isOutcome(ok.id, 'activated'));

  // Tampered model bytes: the blob server returns other bytes under v3's sha.
  const { generateKeyPairSync } = await import('node:crypto');
  const v3Blob = world.v3.manifest.files['model.onnx']!.sha256;
  const { readFile } = await import('node:fs/promises');
  const original = await readFile(`${world.v3.dir}/model.onnx`);
  const tampered = Buffer.from(original);
  tampered[tampered.length - 5]! ^= 0xff;
  world.http.setBlob(v3Blob, tampered);
  const tamperedAssignment = await world.assign('refuse-1', world.v3, 'active');
  const tamperedReport = await world.waitForReport(isOutcome(tamperedAssignment.id, 'refused'));
  assert.match(tamperedReport.kind === 'assignment' ? tamperedReport.reason ?? '' : '', /sha256 mismatch/);
  world.http.setBlob(v3Blob, original);

  // A manifest signed by another key (same content, so the same artifact id).
  const { signManifest } = await import('../../shared/artifact/signature.ts');
  const foreign = signManifest(world.v3.manifest, generateKeyPairSync('ed25519').privateKey);
  world.http.setManifest(world.v3.id, JSON.stringify(foreign));
  const badSignature = await world.assign('refuse-1', world.v3, 'candidate');
  const signatureReport = await world.waitForReport(isOutcome(badSignature.id, 'refused'));
  assert.match(signatureReport.kind === 'assignment' ? signatureReport.reason ?? '' : '', /signature: made with key/);

  // A manifest edited after signing: its artifact id no longer matches the assignment's sha256.
  world.http.setManifest(world.v3.id, JSON.stringify({ ...world.v3.manifest, labels: ['x', 'y', 'z'] }));
  const wrongSha = await world.assign('refuse-1', world.v3, 'candidate');
  const shaReport = await world.waitForReport(isOutcome(wrongSha.id, 'refused'));
  assert.match(shaReport.kind === 'assignment' ? shaReport.reason ?? '' : '', /artifact id is [0-9a-f]{64}, but the assignment names/);
  world.http.setManifest(world.v3.id, await readFile(`${world.v3.dir}/manifest.json`));

  // An assignment pointing somewhere else than the enrolled server (the token must not leak there).
  const { publishAssignment } = await import('../../server/fleet/fleet-publisher.ts');
  const elsewhere = await publishAssignment(world.harness.broker, 'refuse-1', { model: world.v3.manifest.name, version: '3', sha256: world.v3.id, role: 'candidate', serverUrl: 'http://127.0.0.2:9' }, { privateKey: world.privateKey });
  const elsewhereReport = await world.waitForReport(isOutcome(elsewhere.id, 'refused'));
  assert.match(elsewhereReport.kind === 'assignment' ? elsewhereReport.reason ?? '' : '', /is not on the enrolled server/);
  // The enrolled server with a user name and password in the URL: refused at once, not retried.
  const withCredentials = new URL(world.http.url);
  withCredentials.username = 'someone';
  withCredentials.password = 'secret';
  const credentialed = await publishAssignment(world.harness.broker, 'refuse-1', { model: world.v3.manifest.name, version: '3', sha256: world.v3.id, role: 'candidate', serverUrl: withCredentials.href.replace(/\/$/, '') }, { privateKey: world.privateKey });
  const credentialedReport = await world.waitForReport(isOutcome(credentialed.id, 'refused'), 3000);
  assert.match(credentialedReport.kind === 'assignment' ? credentialedReport.reason ?? '' : '', /must not carry a user name or password/);

  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.equal(agent.slots.candidate, null);
  assert.deepEqual((await readdir(`${dataDir}/models`)).sort(), [world.v1.id]);
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);
});

test('a model changed on disk is never trusted: promoting the candidate downloads it again and replaces the changed copy', async (t) => {
  const { agent, dataDir } = await startAgent(t, world, 'disk-tamper-1');
  const first = await world.assign('disk-tamper-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const candidate = await world.assign('disk-tamper-1', world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await agent.idle();
  // The candidate's model.onnx is swapped on the device (an edited SD card): a runnable model, other bytes.
  const onnx = join(dataDir, 'models', world.v2.id, 'model.onnx');
  await cp(join(world.v3.dir, 'model.onnx'), onnx);
  const downloads = world.http.blobRequests().length;
  const promotion = await world.assign('disk-tamper-1', world.v2, 'active');
  await world.waitForReport(isOutcome(promotion.id, 'activated'));
  assert.equal(agent.slots.active?.sha256, world.v2.id);
  assert.ok(world.http.blobRequests().length > downloads, 'the model was downloaded again');
  assert.equal(sha256Hex(await readFile(onnx)), world.v2.manifest.files['model.onnx']!.sha256, 'the changed copy was replaced by the signed one');
});

test('a benchmark that fails because the active model is damaged on disk names the active model, not just the error', async (t) => {
  const { agent, dataDir } = await startAgent(t, world, 'disk-active-1');
  const first = await world.assign('disk-active-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  await agent.idle();
  await writeFile(join(dataDir, 'models', world.v1.id, 'model.onnx'), 'damaged');
  const candidate = await world.assign('disk-active-1', world.v2, 'candidate');
  const failed = await world.waitForReport(isOutcome(candidate.id, 'benchmark-failed'));
  assert.match(failed.kind === 'assignment' ? failed.reason ?? '' : '', /^the active model 1: \S/);
  // The device's own model failed, not the candidate: the rollout does not blame it.
  assert.equal(failed.kind === 'assignment' && failed.failedRole, 'active');
});

test('a revert whose previous model is damaged on disk downloads the baseline instead of refusing', async (t) => {
  const { agent, dataDir, predict } = await startAgent(t, world, 'disk-revert-1');
  const first = await world.assign('disk-revert-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const promoted = await world.assign('disk-revert-1', world.v2, 'active');
  await world.waitForReport(isOutcome(promoted.id, 'activated'));
  assert.equal(agent.slots.previous?.sha256, world.v1.id);
  await agent.idle();
  await writeFile(join(dataDir, 'models', world.v1.id, 'model.onnx'), 'damaged');
  const downloads = world.http.blobRequests().length;
  // A rollout's revert: the baseline assigned as active again.
  const revert = await world.assign('disk-revert-1', world.v1, 'active', { revert: true });
  // Answered as a rollback all the same (a rollout's revert reads as one, however its model came).
  await world.waitForReport(isOutcome(revert.id, 'rolled-back'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.ok(world.http.blobRequests().length > downloads, 'the baseline was downloaded');
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);
  const onnx = join(dataDir, 'models', world.v1.id, 'model.onnx');
  assert.equal(sha256Hex(await readFile(onnx)), world.v1.manifest.files['model.onnx']!.sha256);
});

test('a report the outbox cannot take (a full disk) does not undo its step: the new model serves, the report is kept in the state file and sent from there directly, and the next step drops it from there, once the disk recovers, without sending it again', async (t) => {
  // No heartbeat in this test: a heartbeat tick moves the state file's reports on too, and would
  // drop this one as soon as it was sent directly (it is the broker's then), before it is looked at.
  const { agent, dataDir, predict } = await startAgent(t, world, 'outbox-full-1', { heartbeatIntervalMs: 3_600_000 });
  const first = await world.assign('outbox-full-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  await agent.idle();
  // The outbox cannot take a file now (a file where its directory goes); state.json still can.
  const outbox = join(dataDir, 'outbox');
  await rm(outbox, { recursive: true });
  await writeFile(outbox, 'in the way');
  const second = await world.assign('outbox-full-1', world.v2, 'active');
  await waitFor(() => agent.slots.active?.sha256 === world.v2.id, 10_000, 'v2 active in the state');
  await agent.idle();
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v2.id, 'the model the state names is the one serving');
  const unsent = async () => (JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as { unsentReports: { assignmentId: string }[] }).unsentReports;
  assert.deepEqual((await unsent()).map((report) => report.assignmentId), [second.id], 'the report is kept in the state file');
  // ... and sent from there while connected: the server need not wait for the disk.
  await world.waitForReport(isOutcome(second.id, 'activated'), 5000);
  const duplicates = async () => (await world.harness.registry.getSingleMetric(PROTOCOL_METRICS.duplicateReports)!.get()).values[0]?.value ?? 0;
  const duplicatesBefore = await duplicates();
  // Room again: the next step's commit moves the state file's reports on, and drops the one sent directly without sending it again.
  await rm(outbox);
  await mkdir(outbox);
  const third = await world.assign('outbox-full-1', world.v1, 'active', { revert: true });
  await world.waitForReport(isOutcome(third.id, 'rolled-back'));
  await agent.idle();
  assert.deepEqual(await unsent(), [], 'the state file emptied');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(await duplicates(), duplicatesBefore, 'not sent again');
});

test('a revert whose previous model verifies but fails to load for a moment keeps it: refused without deleting it, then taken from disk', async (t) => {
  const failing = new Map<string, number>();
  const real = new OrtSessionCache();
  const sessions: SessionCache = {
    acquire(source) {
      const left = failing.get(source.artifactId) ?? 0;
      if (left > 0) {
        failing.set(source.artifactId, left - 1);
        return Promise.reject(new Error('std::bad_alloc (out of memory)'));
      }
      return real.acquire(source);
    },
  };
  const { agent, dataDir, predict } = await startAgent(t, world, 'flaky-load-1', { sessions });
  for (const artifact of [world.v1, world.v2]) {
    const assignment = await world.assign('flaky-load-1', artifact, 'active');
    await world.waitForReport(isOutcome(assignment.id, 'activated'));
  }
  await agent.idle();
  const downloads = world.http.blobRequests().length;
  failing.set(world.v1.id, 2); // the rollback from disk, then the assignment's usual path
  const revert = await world.assign('flaky-load-1', world.v1, 'active', { revert: true });
  const refused = await world.waitForReport(isOutcome(revert.id, 'refused'));
  assert.match(refused.kind === 'assignment' ? (refused.reason ?? '') : '', /out of memory/);
  await agent.idle();
  assert.equal(agent.slots.previous?.sha256, world.v1.id, 'still the rollback target');
  assert.ok((await readdir(join(dataDir, 'models'))).includes(world.v1.id), 'still on disk');
  const again = await world.assign('flaky-load-1', world.v1, 'active', { revert: true });
  await world.waitForReport(isOutcome(again.id, 'rolled-back'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);
  assert.equal(world.http.blobRequests().length, downloads, 'nothing downloaded: a revert must work offline');
});

test('an interrupted download resumes with Range and verifies', async (t) => {
  const { mkdir, writeFile, readFile, mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { rm } = await import('node:fs/promises');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-resume-'));
  const blob = world.big.manifest.files['model.onnx']!;
  const bytes = await readFile(`${world.big.dir}/model.onnx`);
  const half = Math.floor(bytes.length / 2);
  await mkdir(join(dataDir, 'downloads'), { recursive: true });
  await writeFile(join(dataDir, 'downloads', `${blob.sha256}.part`), bytes.subarray(0, half));
  const { agent } = await startAgent(t, world, 'resume-1', { dataDir });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after the agent's own stop hook
  const before = world.http.blobRequests().length;
  const assignment = await world.assign('resume-1', world.big, 'candidate');
  await world.waitForReport(isOutcome(assignment.id, 'installed'));
  const requests = world.http.blobRequests().slice(before);
  assert.equal(requests.length, 1);
  assert.equal(requests[0]!.range, `bytes=${half}-`);
  assert.equal(requests[0]!.status, 206);
  assert.equal(agent.slots.candidate?.sha256, world.big.id);
  assert.equal((await agent.metrics.downloadedBytes.get()).values[0]!.value, bytes.length - half);
});

test('no report is lost while the broker is down: it arrives exactly once after the broker returns', async (t) => {
  const { agent } = await startAgent(t, world, 'outage-1');
  const ok = await world.assign('outage-1', world.v1, 'active');
  await world.waitForReport(isOutcome(ok.id, 'activated'));
  world.http.throttle = { chunkBytes: 64 * 1024, delayMs: 100 };
  t.after(() => (world.http.throttle = undefined));
  const candidate = await world.assign('outage-1', world.big, 'candidate');
  await waitFor(() => world.http.blobRequests().some((r) => r.path.endsWith(world.big.manifest.files['model.onnx']!.sha256)), 5000, 'download started');
  await world.broker.stop();
  await waitFor(() => !agent.connected, 5000, 'agent disconnected');
  // The agent finishes download and benchmark offline: the reports wait in its outbox.
  await waitFor(async () => (await agent.metrics.outboxPending.get()).values[0]!.value >= 2, 20_000, 'reports in the outbox');
  assert.equal(world.harness.ingest.reports.filter((r) => r.assignmentId === candidate.id).length, 0);
  await world.broker.start();
  const report = await world.waitForReport(isBenchmarkFor(world.big.id, 'outage-1'), 15_000);
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(async () => (await agent.metrics.outboxPending.get()).values[0]!.value === 0, 5000, 'outbox drained');
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(world.harness.ingest.reports.filter((r) => r.id === report.id).length, 1, 'ingested exactly once');
});

test('malformed assignments and commands from real mosquitto_pub processes are dropped and counted; the agent keeps working', async (t) => {
  const { findExecutable, engineMissing } = await import('../helpers/engines.ts');
  if (!findExecutable(['mosquitto_pub'])) return engineMissing(t, 'mosquitto_pub', 'not on PATH (apt-get install mosquitto-clients)');
  const { mosquittoPub } = await import('../helpers/mqtt-clients.ts');
  const { assignmentTopic, FLEET_COMMANDS_TOPIC } = await import('../../shared/protocol/topics.ts');
  const { writeFile, mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { randomBytes } = await import('node:crypto');
  const { agent } = await startAgent(t, world, 'garbage-1');
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-garbage-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'huge'), JSON.stringify({ schema: 1, pad: 'x'.repeat(200_000) }));
  await writeFile(join(dir, 'binary'), Buffer.concat([Buffer.from([0xc3, 0x28]), randomBytes(1024)]));
  const server = { username: world.harness.server.username, password: world.harness.server.password, clientId: 'server-pub' };
  const url = world.broker.url;
  const topic = assignmentTopic('garbage-1');
  const { signAssignment } = await import('../../shared/protocol/message-signature.ts');
  const unsigned = { schema: 1 as const, id: 'assignment-0001', issuedAt: new Date().toISOString(), model: 'sensor-classifier', version: '1', sha256: world.v1.id, url: world.http.manifestUrl(world.v1.id), role: 'active' as const, seq: 1 };
  const valid = signAssignment('garbage-1', unsigned, world.privateKey);
  const sent: [string, { message?: string; file?: string }, string][] = [
    [topic, { message: '{"schema":1,"role":' }, 'invalid-json'],
    [topic, { message: JSON.stringify({ ...valid, role: 42, sha256: 'short' }) }, 'invalid-payload'],
    [topic, { file: join(dir, 'huge') }, 'too-large'],
    [topic, { file: join(dir, 'binary') }, 'not-utf8'],
    [FLEET_COMMANDS_TOPIC, { message: JSON.stringify({ schema: 1, id: 'command-0001', issuedAt: new Date().toISOString(), command: 'rm -rf', selector: {} }) }, 'invalid-payload'],
  ];
  for (const [target, payload] of sent) {
    const result = await mosquittoPub(url, server, target, payload);
    assert.equal(result.code, 0, result.stderr);
  }
  const dropped = async () => (await agent.metrics.droppedMessages.get()).values;
  await waitFor(async () => (await dropped()).reduce((sum, v) => sum + v.value, 0) >= sent.length, 5000, 'drops counted');
  for (const reason of ['invalid-json', 'invalid-payload', 'too-large', 'not-utf8']) {
    assert.equal((await dropped()).filter((v) => v.labels.reason === reason).reduce((sum, v) => sum + v.value, 0), sent.filter((s) => s[2] === reason).length, reason);
  }
  // Still alive and working: a valid assignment (also via mosquitto_pub) is carried out.
  const result = await mosquittoPub(url, server, topic, { message: JSON.stringify(valid) });
  assert.equal(result.code, 0, result.stderr);
  await world.waitForReport(isOutcome('assignment-0001', 'activated'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('a candidate that fails in its shadow runs (non-finite outputs) counts the failed rows in the heartbeat; serving is unaffected', async (t) => {
  const { writeVersionedArtifact } = await import('./agent-fixtures.ts');
  const { join } = await import('node:path');
  const dir = join(world.dir, 'artifacts', 'overflowing');
  // Weights of 1e30 overflow to Infinity, and softmax(Infinity, ...) is NaN.
  const manifest = await writeVersionedArtifact(dir, '7', 77, [8], world.privateKey, (network) => {
    for (const layer of network.layers) (layer.weights = layer.weights.map(() => 1e30)), (layer.bias = layer.bias.map(() => 1e30));
  });
  const { id } = await world.http.addArtifact(dir);
  const { agent, predict, url } = await startAgent(t, world, 'shadow-fail-1', { shadowFraction: 1, heartbeatIntervalMs: 200 });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const active = await world.assign('shadow-fail-1', world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  const candidate = await world.assign('shadow-fail-1', { id, version: '7', dir, manifest }, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  // The candidate's shadow session may still be loading just after `installed`: ask until a heartbeat shows shadow failures.
  const rows = [[1e3, 1e3, 1e3, 1e3, 1e3, 1e3, 1e3], [2e3, 2e3, 2e3, 2e3, 2e3, 2e3, 2e3]];
  const serving = () => world.harness.ingest.telemetry.get('shadow-fail-1')?.serving;
  await waitFor(async () => {
    const served = await predict({ rows });
    assert.deepEqual([served.status, served.json.sha256], [200, world.v1.id], 'the active model serves');
    return (serving()?.shadowErrors ?? 0) > 0;
  }, 10_000, 'failed shadow rows in a heartbeat');
  assert.equal(serving()!.shadowRows, 0, 'no shadow run succeeded');
  assert.ok(serving()!.shadowErrors! >= 2 && serving()!.shadowErrors! % 2 === 0, `${serving()!.shadowErrors} failed rows, two per request`);
  const counted = Number(/fleetprune_agent_shadow_errors_total\{version="7"\} (\d+)/.exec(await (await fetch(`${url}/metrics`)).text())?.[1]);
  assert.ok(counted >= serving()!.shadowErrors!, `the agent's own counter, by candidate version (${counted})`);
});

test('agents in one process share one onnxruntime session per model', async (t) => {
  const { OrtSessionCache } = await import('../../agent/session-cache.ts');
  const sessions = new OrtSessionCache();
  const a = await startAgent(t, world, 'shared-a', { sessions });
  const b = await startAgent(t, world, 'shared-b', { sessions });
  const [first, second] = await Promise.all([world.assign('shared-a', world.v1, 'active'), world.assign('shared-b', world.v1, 'active')]);
  await world.waitForReport(isOutcome(first.id, 'activated'));
  await world.waitForReport(isOutcome(second.id, 'activated'));
  assert.equal(sessions.size, 1, 'one session for v1');
  assert.equal((await a.predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);
  assert.equal((await b.predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v1.id);
  const moved = await world.assign('shared-a', world.v2, 'active');
  await world.waitForReport(isOutcome(moved.id, 'activated'));
  assert.equal(sessions.size, 2, 'v1 (still used by b) and v2');
  await b.stop();
  assert.equal(sessions.size, 1, 'v1 released with its last user');
});

test('onnxruntime loads the bytes it verified: a model.onnx that differs from its manifest is refused, not run', async (t) => {
  const { OrtSessionCache } = await import('../../agent/session-cache.ts');
  const sessions = new OrtSessionCache();
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-onnx-bytes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const onnxPath = join(dir, 'model.onnx');
  await cp(join(world.v3.dir, 'model.onnx'), onnxPath); // a runnable model, but not v2's bytes
  const v2 = { artifactId: world.v2.id, onnxPath, onnxSha256: world.v2.manifest.files['model.onnx']!.sha256 };
  await assert.rejects(sessions.acquire(v2), /model\.onnx: sha256 mismatch \(changed on disk after it was verified\)/);
  assert.equal(sessions.size, 0, 'nothing cached for the refused model');
  await cp(join(world.v2.dir, 'model.onnx'), onnxPath);
  const lease = await sessions.acquire(v2);
  assert.equal(sessions.size, 1);
  await lease.release();
});

test('regression models: benchmark reports MSE and R², /v1/predict returns values', async (t) => {
  const { writeRegressionArtifact } = await import('./agent-fixtures.ts');
  const { Holdout } = await import('../../agent/holdout.ts');
  const { join } = await import('node:path');
  const artifactDir = join(world.dir, 'artifacts', 'regression');
  const holdoutPath = join(world.dir, 'regression-holdout.csv');
  const manifest = await writeRegressionArtifact(artifactDir, holdoutPath, world.privateKey);
  const { id } = await world.http.addArtifact(artifactDir);
  const artifact = { id, version: 'r1', dir: artifactDir, manifest };
  const { agent, predict } = await startAgent(t, world, 'regression-1', { holdout: Holdout.fromFile(holdoutPath, 'yield') });
  const candidate = await world.assign('regression-1', artifact, 'candidate');
  const report = await world.waitForReport(isBenchmarkFor(id, 'regression-1'));
  assert.equal(report.kind, 'benchmark');
  if (report.kind !== 'benchmark') return;
  assert.equal(report.assignmentId, candidate.id);
  assert.equal(report.active, null, 'no active model to compare with yet');
  assert.ok('mse' in report.candidate.score && report.candidate.score.mse > 0 && Number.isFinite(report.candidate.score.r2));
  const activation = await world.assign('regression-1', artifact, 'active');
  await world.waitForReport(isOutcome(activation.id, 'activated'));
  assert.equal(agent.slots.active?.sha256, id);
  const served = await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] });
  assert.equal(served.status, 200);
  assert.equal(typeof served.json.predictions[0].value, 'number');
  assert.ok(Number.isFinite(served.json.predictions[0].value));

  // A candidate the holdout does not fit is installed, but its benchmark fails with a reason.
  const mismatch = await world.assign('regression-1', world.v1, 'candidate');
  const failed = await world.waitForReport(isOutcome(mismatch.id, 'benchmark-failed'));
  assert.match(failed.kind === 'assignment' ? failed.reason ?? '' : '', /: label "\d+\.\d+" \(\d+ rows?, the first at line \d+\) is not one of the model's classes \(a, b, c\)/);
  assert.equal(failed.kind === 'assignment' && failed.failedRole, 'candidate');
  assert.equal(agent.slots.candidate?.sha256, world.v1.id);
});

test('a refusal reason cut at its 2000-character limit keeps surrogate pairs whole: the server accepts the report', async (t) => {
  await startAgent(t, world, 'surrogate-1');
  const { signAssignment } = await import('../../shared/protocol/message-signature.ts');
  const { assignmentTopic } = await import('../../shared/protocol/topics.ts');
  const { newMessageId } = await import('../../shared/protocol/message-id.ts');
  // The reason is `manifest URL ${url} is not on the enrolled server …`: the URL's emoji (two UTF-16
  // code units) starts at the reason's 2000th code unit, so a cut at 2000 would keep half of it.
  const prefix = 'manifest URL ';
  const head = 'http://127.0.0.2:9/';
  const url = `${head}${'a'.repeat(1999 - prefix.length - head.length)}\u{1F642}/manifest`;
  const unsigned = { schema: 1 as const, id: newMessageId(), issuedAt: new Date().toISOString(), model: world.v3.manifest.name, version: '3', sha256: world.v3.id, url, role: 'candidate' as const, seq: Date.now() };
  const assignment = signAssignment('surrogate-1', unsigned, world.privateKey);
  await world.harness.broker.publish(assignmentTopic('surrogate-1'), Buffer.from(JSON.stringify(assignment)), { qos: 1, retain: true });
  const before = await world.harness.droppedCount('invalid-payload');
  const report = await world.waitForReport(isOutcome(assignment.id, 'refused'), 10_000);
  const reason = report.kind === 'assignment' ? report.reason ?? '' : '';
  assert.equal(reason, `${prefix}${url}`.slice(0, 1999), 'cut before the pair, not inside it');
  assert.equal(reason.isWellFormed(), true, 'no lone surrogate');
  assert.equal(await world.harness.droppedCount('invalid-payload'), before, 'the server dropped nothing as invalid');
});

test("an agent whose config trusts another server's key does not delete the models it holds: the start stops, naming both keys, and the files stay", async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-otherkey-'));
  const first = await startAgent(t, world, 'other-key-1', { dataDir });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after the agent has stopped
  const assignment = await world.assign('other-key-1', world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  await first.agent.idle();
  await first.stop();
  const models = (await readdir(join(dataDir, 'models'))).sort();
  const state = await readFile(join(dataDir, 'state.json'), 'utf8');

  const config = await world.config('other-key-1', { site: 'osaka' });
  const otherKey = generateKeyPairSync('ed25519').publicKey;
  const wrong = { ...config, serverPublicKey: otherKey.export({ type: 'spki', format: 'pem' }).toString() };
  await assert.rejects(startAgent(t, world, 'other-key-1', { dataDir, config: wrong }), (error: Error) => {
    assert.equal(
      error.message,
      `the models in ${dataDir} (${world.v1.manifest.name}@1 (active)) are signed with key ${world.v1.manifest.signature!.keyId}, but this agent's config trusts server key ${keyId(otherKey)} (serverPublicKey) (the agent last ran here with server key ${keyId(world.publicKey)}): ` +
        "if the config is another server's or device's, put this device's config back; if the device was enrolled again with a server that has a new key, start it with an empty --data-dir. Nothing on disk was changed",
    );
    return true;
  });
  assert.deepEqual((await readdir(join(dataDir, 'models'))).sort(), models, 'no model was deleted');
  assert.equal(await readFile(join(dataDir, 'state.json'), 'utf8'), state, 'the slots are as they were');
  // With the right config it serves its model again, without a download.
  const downloads = world.http.blobRequests().length;
  const again = await startAgent(t, world, 'other-key-1', { dataDir });
  assert.equal(again.agent.slots.active?.sha256, world.v1.id);
  assert.equal(world.http.blobRequests().length, downloads);
});
