import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test, type TestContext } from 'node:test';
import { publishAssignment } from '../../server/fleet/fleet-publisher.ts';
import type { Report, Role } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { TOKEN, createAgentWorld, isAnswerTo, isOutcome, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { makeFifo } from './fifo.ts';
import { HostileHttpServer, trickle } from './hostile-http.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const reasonOf = (report: Report) => (report.kind === 'assignment' ? (report.reason ?? '') : '');

/** A real agent enrolled with a misbehaving server that forwards to the artifact fixture unless told otherwise. */
async function hostileAgent(t: TestContext, deviceId: string, options: Parameters<typeof startAgent>[3] = {}) {
  const hostile = await HostileHttpServer.start(world.http.url);
  const config = await world.harness.enroll(deviceId, { url: hostile.url, token: TOKEN, publicKey: world.publicKey });
  const running = await startAgent(t, world, deviceId, { config, ...options });
  t.after(() => hostile.close()); // after the agent's stop hook
  const assign = (artifact: TestArtifact, role: Role) =>
    publishAssignment(world.harness.broker, deviceId, { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: hostile.url }, { privateKey: world.privateKey });
  return { hostile, config, assign, ...running };
}

const blobPath = (artifact: TestArtifact) => `/api/blobs/${artifact.manifest.files['model.onnx']!.sha256}`;
const isManifest = (path: string) => path.startsWith('/api/artifacts/');

test('redirects are not followed: a 307 to another origin is refused (nothing fetched there, no token sent), a redirect loop is refused at once', async (t) => {
  const foreignSeen: (string | undefined)[] = [];
  const foreign = createServer((request, response) => {
    foreignSeen.push(request.headers.authorization);
    // Serves the genuine (signed) artifact without asking for a token.
    void fetch(new URL(request.url ?? '/', world.http.url), { headers: { Authorization: `Bearer ${TOKEN}` } }).then(async (answer) => {
      response.writeHead(answer.status, { 'Content-Type': 'application/octet-stream' }).end(Buffer.from(await answer.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => foreign.close(resolve)));
  const foreignUrl = `http://127.0.0.1:${(foreign.address() as AddressInfo).port}`;

  const { hostile, assign, agent } = await hostileAgent(t, 'redirect-1');
  hostile.handler = (request, response) => {
    response.writeHead(307, { Location: `${foreignUrl}${request.url}` }).end();
    return true;
  };
  const moved = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(moved.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'refused', reasonOf(report));
  assert.match(reasonOf(report), /HTTP 307 redirect to http:\/\/127\.0\.0\.1:\d+\/api\/artifacts\/.* not followed/);
  assert.deepEqual(foreignSeen, [], 'the other origin was never contacted');
  assert.equal(agent.slots.active, null);

  // A redirect loop on the enrolled server: one request, refused, not 20 hops × 5 attempts.
  hostile.handler = (request, response) => {
    response.writeHead(302, { Location: request.url }).end();
    return true;
  };
  const before = hostile.seen.length;
  const looping = await assign(world.v1, 'active');
  const loopReport = await world.waitForReport(isAnswerTo(looping.id), 10_000);
  assert.equal(loopReport.kind === 'assignment' && loopReport.outcome, 'refused');
  assert.match(reasonOf(loopReport), /HTTP 302 redirect .* not followed/);
  assert.equal(hostile.seen.length - before, 1);
});

test('a manifest body cut by a reset or stalled past the idle timeout is retried, not refused', async (t) => {
  const { hostile, assign, agent } = await hostileAgent(t, 'manifest-reset-1', { downloadLimits: { idleTimeoutMs: 400 } });
  const manifest = await readFile(join(world.v1.dir, 'manifest.json'));
  let calls = 0;
  hostile.handler = (request, response) => {
    if (!isManifest(new URL(request.url!, 'http://x').pathname)) return false;
    calls += 1;
    if (calls === 1) {
      // Content-Length promises the whole manifest; half arrives, then the connection dies.
      response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': manifest.length });
      response.write(manifest.subarray(0, manifest.length >> 1), () => response.socket?.destroy());
      return true;
    }
    if (calls === 2) {
      response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': manifest.length });
      response.write(manifest.subarray(0, 10)); // ... and then nothing
      return true;
    }
    return false;
  };
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 15_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.equal(calls, 3);
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('a model trickled just under the idle timeout is aborted by the minimum rate and resumed with Range', async (t) => {
  const { hostile, assign, agent } = await hostileAgent(t, 'trickle-1', { downloadLimits: { idleTimeoutMs: 500, minBytesPerSecond: 2000, rateWindowMs: 600 } });
  const body = await readFile(join(world.v1.dir, 'model.onnx'));
  hostile.handler = (request, response) => {
    if (new URL(request.url!, 'http://x').pathname !== blobPath(world.v1) || request.headers.range) return false;
    response.writeHead(200, { 'Content-Length': body.length, ETag: `"${world.v1.manifest.files['model.onnx']!.sha256}"` });
    void trickle(response, body, 1, 100); // 10 bytes/s, a byte every 100 ms: never idle, done in minutes
    return true;
  };
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  const blobs = hostile.requestsTo('/api/blobs/');
  assert.equal(blobs.length, 2);
  assert.equal(blobs[0]!.range, undefined);
  assert.match(blobs[1]!.range ?? '', /^bytes=[1-9]\d*-$/, 'resumed where the trickle stopped');
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('the minimum rate holds in every window: a fast start does not buy a long trickle', async (t) => {
  const body = await readFile(join(world.v1.dir, 'model.onnx'));
  const burst = body.length >> 1;
  // Each 300 ms window must bring burst/50 bytes; the trickle brings 3. Averaged since the start,
  // the burst would cover about 50 windows (15 s) of trickle.
  const limits = { idleTimeoutMs: 500, rateWindowMs: 300, minBytesPerSecond: Math.ceil(burst / 15) };
  const { hostile, assign, agent } = await hostileAgent(t, 'burst-trickle-1', { downloadLimits: limits });
  hostile.handler = (request, response) => {
    if (new URL(request.url!, 'http://x').pathname !== blobPath(world.v1) || request.headers.range) return false;
    response.writeHead(200, { 'Content-Length': body.length, ETag: `"${world.v1.manifest.files['model.onnx']!.sha256}"` });
    response.write(body.subarray(0, burst));
    void trickle(response, body, 1, 100, burst);
    return true;
  };
  const started = Date.now();
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.ok(Date.now() - started < 6000, `aborted within a couple of windows of the burst, not after ~50 (took ${Date.now() - started} ms)`);
  const blobs = hostile.requestsTo('/api/blobs/');
  assert.equal(blobs.length, 2);
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(blobs[1]!.range ?? '')?.[1]);
  assert.ok(resumedAt >= burst && resumedAt < burst + 30, `resumed just past the burst (at ${resumedAt} of ${body.length})`);
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('a resumed download answered with 416, with a 206 of another range or with a 206 that ends short starts over from zero instead of failing forever', async (t) => {
  const bytes = await readFile(join(world.v1.dir, 'model.onnx'));
  const sha = world.v1.manifest.files['model.onnx']!.sha256;
  for (const [deviceId, misbehave] of [
    ['range-416', (response: import('node:http').ServerResponse) => response.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end()],
    // A server that ignores the offset asked for: a 206 of the whole blob.
    ['range-206', (response: import('node:http').ServerResponse) => response.writeHead(206, { 'Content-Range': `bytes 0-${bytes.length - 1}/${bytes.length}`, 'Content-Length': bytes.length }).end(bytes)],
    // The range asked for, but a body that ends (cleanly) 10 bytes in: the file comes out short.
    ['range-short', (response: import('node:http').ServerResponse) => response.writeHead(206, { 'Content-Range': `bytes 100-${bytes.length - 1}/${bytes.length}`, 'Content-Length': 10 }).end(bytes.subarray(100, 110))],
  ] as const) {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dataDir = await mkdtemp(join(tmpdir(), `fleetprune-agent-${deviceId}-`));
    await mkdir(join(dataDir, 'downloads'));
    // A stale partial file (from another server, or the blob changed) that the server will not continue.
    await writeFile(join(dataDir, 'downloads', `${sha}.part`), Buffer.alloc(100, 7));
    const { hostile, assign, agent } = await hostileAgent(t, deviceId, { dataDir });
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    hostile.handler = (request, response) => {
      if (!request.headers.range) return false;
      misbehave(response);
      return true;
    };
    const assignment = await assign(world.v1, 'active');
    const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
    assert.equal(report.kind === 'assignment' && report.outcome, 'activated', `${deviceId}: ${reasonOf(report)}`);
    const blobs = hostile.requestsTo('/api/blobs/');
    assert.deepEqual(blobs.map((r) => r.range), ['bytes=100-', undefined], deviceId);
    assert.equal(agent.slots.active?.sha256, world.v1.id);
    assert.deepEqual(await readdir(join(dataDir, 'downloads')), [], 'the verified download moved into the store');
  }
});

test('a 503 with Retry-After is retried no sooner than the server asked', async (t) => {
  const { hostile, assign } = await hostileAgent(t, 'retry-after-1', { retryBaseDelayMs: 50 });
  let unavailable = 2;
  hostile.handler = (request, response) => {
    if (unavailable === 0) return false;
    unavailable -= 1;
    response.writeHead(503, { 'Retry-After': '1' }).end('busy');
    return true;
  };
  const assignment = await assign(world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'), 15_000);
  const manifests = hostile.seen.filter((r) => isManifest(r.path));
  assert.equal(manifests.length, 3);
  for (let i = 1; i < manifests.length; i++) assert.ok(manifests[i]!.at - manifests[i - 1]!.at >= 950, `attempt ${i + 1} after ${manifests[i]!.at - manifests[i - 1]!.at} ms`);
});

test('a server down for longer than the download attempts is no verdict on the model: the assignment is not refused, and it is carried out once the server answers again', async (t) => {
  const { logger, lines } = recordingLogger();
  const { hostile, assign, dataDir } = await hostileAgent(t, 'outage-1', { logger, retryBaseDelayMs: 20, downloadAttempts: 2, assignmentRetryMs: 200 });
  let down = true;
  hostile.handler = (request, response) => {
    if (!down) return false;
    response.writeHead(503).end('down for maintenance');
    return true;
  };
  const assignment = await assign(world.v1, 'active');
  const deferrals = () => lines.filter((line) => line.msg.startsWith('model download failed; the assignment is taken again later'));
  // Before, the second failed attempt refused it ("gave up after 2 attempts"): a rollout failed, and its version was marked failed.
  await waitFor(() => deferrals().length >= 2, 10_000, 'two takes of the assignment deferred');
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(assignment.id)), [], 'nothing answered while the server is down');
  assert.match(deferrals()[0]!.err, /^2 download attempts failed: .*503/);
  assert.deepEqual(deferrals().slice(0, 2).map((line) => line.retryInMs), [200, 400], 'taken again with a backoff');
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as { pending: { id: string } | null; handledIds: string[] };
  assert.equal(state.pending?.id, assignment.id, 'still pending');
  assert.equal(state.handledIds.includes(assignment.id), false);

  down = false;
  const activated = await world.waitForReport(isOutcome(assignment.id, 'activated'), 15_000);
  assert.equal(activated.kind === 'assignment' && activated.version, world.v1.version);
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(assignment.id)).map((report) => report.kind === 'assignment' && report.outcome), ['activated']);
});

test('stopping the agent during a download leaves the assignment pending (not refused); the next start resumes it with Range', async (t) => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-stop-'));
  const first = await hostileAgent(t, 'stop-1', { dataDir });
  const body = await readFile(join(world.big.dir, 'model.onnx'));
  const part = join(dataDir, 'downloads', `${world.big.manifest.files['model.onnx']!.sha256}.part`);
  first.hostile.handler = (request, response) => {
    if (new URL(request.url!, 'http://x').pathname !== blobPath(world.big) || request.headers.range) return false;
    response.writeHead(200, { 'Content-Length': body.length });
    void trickle(response, body, 16 * 1024, 100);
    return true;
  };
  const assignment = await first.assign(world.big, 'candidate');
  await waitFor(async () => ((await stat(part).catch(() => undefined))?.size ?? 0) > 0, 10_000, 'download under way');
  await first.stop();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(world.harness.ingest.reports.some(isAnswerTo(assignment.id)), false, 'no report: stopping is not a refusal');
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as { pending: { id: string } | null; handledIds: string[] };
  assert.equal(state.pending?.id, assignment.id);
  assert.equal(state.handledIds.includes(assignment.id), false);
  const kept = (await stat(part)).size;
  assert.ok(kept > 0 && kept < body.length);

  const second = await startAgent(t, world, 'stop-1', { config: first.config, dataDir });
  t.after(() => rm(dataDir, { recursive: true, force: true })); // after hooks run in order: both agents have stopped by then
  await world.waitForReport(isOutcome(assignment.id, 'installed'), 15_000);
  assert.equal(second.agent.slots.candidate?.sha256, world.big.id);
  const resumed = first.hostile.requestsTo('/api/blobs/').at(-1)!;
  assert.equal(resumed.range, `bytes=${kept}-`);
});

test('a newer assignment cancels the download of the one it replaces; the same assignment delivered twice is carried out once', async (t) => {
  const { hostile, assign, agent } = await hostileAgent(t, 'supersede-1');
  const body = await readFile(join(world.big.dir, 'model.onnx'));
  hostile.handler = (request, response) => {
    if (new URL(request.url!, 'http://x').pathname !== blobPath(world.big)) return false;
    response.writeHead(200, { 'Content-Length': body.length });
    void trickle(response, body, 4 * 1024, 100); // ~40 KB/s: about 25 s for the big model
    return true;
  };
  const slow = await assign(world.big, 'candidate');
  await waitFor(() => hostile.requestsTo(blobPath(world.big)).length > 0, 10_000, 'slow download started');
  const started = Date.now();
  const newer = await assign(world.v2, 'active');
  const superseded = await world.waitForReport(isAnswerTo(slow.id), 5000);
  assert.equal(superseded.kind === 'assignment' && superseded.outcome, 'refused');
  assert.match(reasonOf(superseded), new RegExp(`superseded by assignment ${newer.id}`));
  await world.waitForReport(isOutcome(newer.id, 'activated'), 5000);
  assert.ok(Date.now() - started < 5000);
  assert.equal(agent.slots.active?.sha256, world.v2.id);
  assert.equal(agent.slots.candidate, null);

  // Retained + live: the same assignment twice in quick succession → one manifest fetch, one report.
  const { publishAssignmentPayload } = await import('../../server/fleet/fleet-publisher.ts');
  const twice = await assign(world.v1, 'candidate');
  await publishAssignmentPayload(world.harness.broker, 'supersede-1', twice);
  await world.waitForReport(isOutcome(twice.id, 'installed'));
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(world.harness.ingest.reports.filter(isAnswerTo(twice.id)).length, 1);
  assert.equal(hostile.seen.filter((r) => r.path === `/api/artifacts/${world.v1.id}/manifest.json`).length, 1);
});

test('a model longer than the manifest says is cut at the limit and refused; nothing is left in downloads/', async (t) => {
  const { hostile, assign, agent, dataDir } = await hostileAgent(t, 'oversize-1');
  const body = Buffer.concat([await readFile(join(world.v1.dir, 'model.onnx')), Buffer.alloc(4 * 1024 * 1024, 1)]);
  let sent = 0;
  hostile.handler = (request, response) => {
    if (new URL(request.url!, 'http://x').pathname !== blobPath(world.v1)) return false;
    response.writeHead(200); // chunked, no Content-Length: the agent must count
    void (async () => {
      for (let offset = 0; offset < body.length && !response.destroyed; offset += 1024) {
        response.write(body.subarray(offset, offset + 1024));
        sent = offset + 1024;
        await new Promise((resolve) => setImmediate(resolve));
      }
      response.end();
    })();
    return true;
  };
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'refused');
  assert.match(reasonOf(report), /the server sent more than the manifest's \d+ bytes/);
  assert.equal(hostile.requestsTo('/api/blobs/').length, 1, 'refused at once, not retried');
  assert.ok(sent < body.length, `stopped reading (${sent} of ${body.length} bytes sent)`);
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), []);
  assert.equal(agent.slots.active, null);
});

test('a fresh download answered with a 206 the agent did not ask for (no Content-Range) is retried from zero, not refused as a failure of the device\'s disk', async (t) => {
  const { hostile, assign, agent } = await hostileAgent(t, 'audit-unasked-206');
  const bytes = await readFile(join(world.v1.dir, 'model.onnx'));
  let odd = 1;
  hostile.handler = (request, response) => {
    if (!request.url!.startsWith('/api/blobs/') || odd === 0) return false;
    odd -= 1;
    // No Range was sent; the answer is a 206 that says no range at all.
    response.writeHead(206, { 'Content-Length': bytes.length }).end(bytes);
    return true;
  };
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.doesNotMatch(reasonOf(report), /ENOENT/, 'not blamed on the device\'s storage');
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.deepEqual(hostile.requestsTo('/api/blobs/').map((r) => r.range), [undefined, undefined]);
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('a directory named like a partial download in downloads/ does not make every download fail: it is removed like any other leftover', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-audit-partdir-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  const junk = join(dataDir, 'downloads', `${'a'.repeat(64)}.part`);
  await mkdir(join(junk, 'inside'), { recursive: true });
  const { assign, agent } = await hostileAgent(t, 'audit-partdir', { dataDir });
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), []);
});

test('a directory or a FIFO where the partial download of the very model assigned goes is removed, neither refused as a disk failure nor waited on for good', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-audit-ownpart-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  const partOf = (artifact: TestArtifact) => join(dataDir, 'downloads', `${artifact.manifest.files['model.onnx']!.sha256}.part`);
  const { assign, agent } = await hostileAgent(t, 'audit-ownpart', { dataDir });
  // Each made just before its own model is assigned: a download removes the other models' leftovers.
  const junk = {
    [world.v1.id]: async () => {
      await mkdir(join(partOf(world.v1), 'inside'), { recursive: true });
    },
    [world.v2.id]: async () => makeFifo(partOf(world.v2)),
  };
  for (const artifact of [world.v1, world.v2]) {
    await junk[artifact.id]!();
    const assignment = await assign(artifact, 'active');
    const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
    assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
    assert.equal(agent.slots.active?.sha256, artifact.id);
    // Removed: the download went to the partial path itself, not around the junk, and moved on.
    assert.deepEqual(await readdir(join(dataDir, 'downloads')), [], `nothing is left at ${partOf(artifact)}`);
  }
});

test('a complete partial download left by an earlier run with the wrong bytes (a power cut before they reached the disk) is downloaded again from zero, not refused', async (t) => {
  const sha = world.v1.manifest.files['model.onnx']!.sha256;
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-zeroed-part-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  await mkdir(join(dataDir, 'downloads'));
  await writeFile(join(dataDir, 'downloads', `${sha}.part`), Buffer.alloc(world.v1.manifest.files['model.onnx']!.bytes));
  const { hostile, assign, agent } = await hostileAgent(t, 'zeroed-part', { dataDir });
  const assignment = await assign(world.v1, 'active');
  const report = await world.waitForReport(isAnswerTo(assignment.id), 10_000);
  assert.equal(report.kind === 'assignment' && report.outcome, 'activated', reasonOf(report));
  assert.deepEqual(hostile.requestsTo('/api/blobs/').map((r) => r.range), [undefined], 'one download, from zero');
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});
