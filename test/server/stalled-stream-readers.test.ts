import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status, type ClientReadableStream } from '@grpc/grpc-js';
import type { StalledStreamLimits } from '../../server/app/stalled-streams.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import type { DecisionLogEntry } from '../../server/rollout/rollout-state.ts';
import { ReducerHarness, STAGED_STEPS, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';
import { startCli } from '../helpers/cli.ts';

/*
 * The server ends an event stream whose client stopped reading (server/app/stalled-streams.ts),
 * and only that one: a watch that starts with a long history, and a slow reader, get everything.
 * --idle-timeout is an hour here, so only the stalled-stream policy can end a stream.
 */

const JOB = 'job-watched';
/** 8 KiB of distinct text per event (a shared string would cost the server nothing to queue). */
const detail = () => randomBytes(4096).toString('hex');

async function serverWithRunningJob(t: TestContext, limits: StalledStreamLimits): Promise<TestServer> {
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 3600 }, start: { stalledStreamLimits: limits } }))!;
  const now = new Date().toISOString();
  const { store, config } = server.server.ctx;
  await store.jobs.insert({ id: JOB, kind: 'prune', state: 'running', request: {}, progress: null, result: null, error: null, createdAt: now, updatedAt: now, createdBy: 'token:test', node: config.nodeId });
  return server;
}

function emitProgress(server: TestServer, done: number): void {
  server.server.ctx.jobs.events.emit({ type: 'progress', jobId: JOB, progress: { phase: 'retrain', done, total: 1_000_000, detail: detail() } });
}

async function finishJob(server: TestServer): Promise<void> {
  const job = (await server.server.ctx.store.jobs.get(JOB))!;
  server.server.ctx.jobs.events.emit({ type: 'state', jobId: JOB, job: { ...job, state: 'succeeded' } });
}

/** fleetprune_stalled_streams_ended_total for one stream, as GET /metrics reports it (0 when absent). */
async function endedCount(server: TestServer, api: string, stream: string): Promise<number> {
  const text = await (await server.request('GET', '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`fleetprune_stalled_streams_ended_total{api="${api}",stream="${stream}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/**
 * Emits progress events (8 KiB each) in batches, as a busy job would, until the server reports the
 * stream ended or `maxEvents` went out. Returns how many were emitted.
 */
async function emitUntilEnded(server: TestServer, api: string, stream: string, maxEvents: number): Promise<number> {
  let emitted = 0;
  while (emitted < maxEvents) {
    for (let i = 0; i < 32; i++) emitProgress(server, emitted++);
    await sleep(25);
    if ((await endedCount(server, api, stream)) > 0) break;
  }
  return emitted;
}

/** Every message until the call ends; resolves with them and how it ended (null: OK). */
function collect(call: ClientReadableStream<any>): Promise<{ messages: any[]; code: number | null; details: string }> {
  const messages: any[] = [];
  return new Promise((resolve) => {
    call.on('data', (message) => messages.push(message));
    call.on('error', (error: { code: number; details: string }) => resolve({ messages, code: error.code, details: error.details }));
    call.on('end', () => resolve({ messages, code: null, details: '' }));
  });
}

test('gRPC WatchJob: a client that stops reading is ended with RESOURCE_EXHAUSTED, its backlog dropped and counted', async (t) => {
  const server = await serverWithRunningJob(t, { budgetBytes: 256 * 1024, graceMs: 300 });
  const client = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => client.close());
  const call = client.open('WatchJob', { id: JOB });
  call.on('error', () => {});
  await once(call, 'data'); // the job's current state
  call.pause(); // reads nothing more; its HTTP/2 connection stays up and answers pings

  // 16 MiB is 64 times the budget: without the policy the server queues all of it for this client.
  const emitted = await emitUntilEnded(server, 'grpc', 'Jobs/WatchJob', 2048);
  assert.equal(await endedCount(server, 'grpc', 'Jobs/WatchJob'), 1, `the stalled watch was ended (${emitted} events of 8 KiB emitted, nothing read)`);
  // The watch is unsubscribed: events from now on reach nobody.
  for (let i = 0; i < 64; i++) emitProgress(server, emitted + i);

  // The client reads again: it gets what grpc-js already held (a few messages), then the status.
  const ended = collect(call);
  call.resume();
  const { messages, code, details } = await ended;
  assert.equal(code, status.RESOURCE_EXHAUSTED, `ended as RESOURCE_EXHAUSTED (${details})`);
  assert.match(details, /read too slowly/);
  const progress = messages.filter((m) => m.progress).map((m) => m.progress.done as number);
  t.diagnostic(`${emitted} events emitted while stalled, ${progress.length} delivered once it read again`);
  // What the server still held for it: grpc-js's queue (its high-water mark, 16 messages) and the
  // HTTP/2 window (64 KiB, 8 of these messages), not the backlog.
  assert.ok(progress.length <= 16 + 8 + 8 && progress.length < emitted, `the backlog was dropped: ${progress.length} of ${emitted} events delivered`);
  assert.ok(progress.every((done) => done < emitted), 'nothing emitted after the stream was ended reached it');
});

test('gRPC WatchJob: a burst far over the budget reaches a reading client, and so does a slow reader; nothing is ended', async (t) => {
  const server = await serverWithRunningJob(t, { budgetBytes: 64 * 1024, graceMs: 10_000 });
  const client = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => client.close());
  const fast = client.open('WatchJob', { id: JOB });
  const slow = client.open('WatchJob', { id: JOB });
  await Promise.all([once(fast, 'data'), once(slow, 'data')]);
  // The slow reader takes a message, looks away, takes the next.
  slow.on('data', () => {
    slow.pause();
    setTimeout(() => slow.resume(), 1);
  });
  const fastDone = collect(fast);
  const slowDone = collect(slow);
  const EVENTS = 512; // 4 MiB, 64 times the budget, written at once
  for (let i = 0; i < EVENTS; i++) emitProgress(server, i);
  await finishJob(server);
  for (const [name, done] of [['reading', fastDone], ['slow', slowDone]] as const) {
    const { messages, code, details } = await done;
    assert.equal(code, null, `the ${name} client's watch ended OK (${details})`);
    assert.equal(messages.filter((m) => m.progress).length, EVENTS, `the ${name} client got every event`);
    assert.equal(messages.at(-1)?.job?.state, 'succeeded');
  }
  assert.equal(await endedCount(server, 'grpc', 'Jobs/WatchJob'), 0);
});

test('gRPC WatchRollout: a watch that starts with a long decision history gets all of it', async (t) => {
  const server = (await startTestServer(t, { config: { idleTimeoutSeconds: 3600 }, start: { stalledStreamLimits: { budgetBytes: 64 * 1024, graceMs: 10_000 } } }))!;
  const h = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(2), '1', 'ro-long');
  const finished = { ...h.state, phase: 'Aborted' as const, devices: h.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const })) };
  const DECISIONS = 3000;
  const decisions: DecisionLogEntry[] = Array.from({ length: DECISIONS }, (_, n) => ({
    id: String(n + 1).padStart(8, '0'),
    rolloutId: 'ro-long',
    at: Date.UTC(2026, 0, 1) + n * 1000,
    kind: 'measurement',
    stepIndex: 0,
    verdict: 'continue',
    message: `step 1: error rate ${n} within bounds; latency p95 within bounds; ${'device report '.repeat(8)}`,
    by: 'controller',
  }));
  await new StoreRolloutRepository(server.server.ctx.store.engine).create({ state: finished, pendingActions: [], decisions });
  const client = grpcClient(server.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => client.close());
  const call = client.open('WatchRollout', { id: 'ro-long' });
  let seen = 0;
  let bytes = 0;
  const ended = await new Promise<string>((resolve) => {
    call.on('data', (message) => {
      bytes += JSON.stringify(message).length;
      if (message.decision) seen++;
      if (message.state) resolve('the state, after the history'); // the state follows the whole history
    });
    call.on('error', (error: { details: string }) => resolve(`an error: ${error.details}`));
    call.on('end', () => resolve('the end of the stream'));
  });
  call.cancel();
  t.diagnostic(`history: ${seen} decisions, ${bytes} bytes as JSON`);
  assert.equal(ended, 'the state, after the history');
  assert.equal(seen, DECISIONS, `every decision of the history arrived (${bytes} bytes, ${Math.round(bytes / (64 * 1024))} times the budget)`);
  assert.equal(await endedCount(server, 'grpc', 'Rollouts/WatchRollout'), 0);
});

test('REST event stream: a client that stops reading is disconnected, its backlog dropped and counted', async (t) => {
  const server = await serverWithRunningJob(t, { budgetBytes: 256 * 1024, graceMs: 300 });
  const socket = connect(Number(new URL(server.baseUrl).port), '127.0.0.1');
  t.after(() => socket.destroy());
  socket.pause(); // reads nothing; the TCP connection stays open
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(`GET /api/jobs/${JOB}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`);
  // 48 MiB: far more than the kernel's socket buffers hold, so the server's own backlog grows.
  const emitted = await emitUntilEnded(server, 'sse', 'GET /api/jobs/:id/events', 6144);
  assert.equal(await endedCount(server, 'sse', 'GET /api/jobs/:id/events'), 1, `the stalled stream was ended (${emitted} events of 8 KiB emitted, nothing read)`);

  // The client reads again: what was in flight arrives, then the connection closes.
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  const closed = once(socket, 'close');
  socket.resume();
  await closed;
  t.diagnostic(`${emitted} events (~${emitted * 8} KiB) emitted while stalled, ${received} bytes delivered once it read again`);
  assert.ok(received < emitted * 8 * 1024, `the backlog was dropped: ${received} of ~${emitted * 8 * 1024} bytes delivered`);
});

test('REST event stream: a burst far over the budget reaches a reading client; nothing is ended', async (t) => {
  const server = await serverWithRunningJob(t, { budgetBytes: 64 * 1024, graceMs: 10_000 });
  const response = await server.request('GET', `/api/jobs/${JOB}/events`);
  assert.equal(response.status, 200);
  const EVENTS = 2048; // 16 MiB written at once: more than the kernel's socket buffers, 256 times the budget
  for (let i = 0; i < EVENTS; i++) emitProgress(server, i);
  await finishJob(server);
  const text = await response.text(); // the stream ends with the job
  assert.equal(text.match(/^event: progress$/gm)?.length, EVENTS, 'every event arrived');
  assert.match(text, /"state":"succeeded"/);
  assert.equal(await endedCount(server, 'sse', 'GET /api/jobs/:id/events'), 0);
});

test('jobs watch whose process stopped reading (suspended): once it runs again it exits 5, saying the server gave up on it and the job goes on', async (t) => {
  const server = await serverWithRunningJob(t, { budgetBytes: 256 * 1024, graceMs: 300 });
  const { child, output, exited } = startCli(t, ['jobs', 'watch', JOB, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  const deadline = Date.now() + 30_000;
  while (!output.stderr.includes(`${JOB}: running`)) {
    assert.ok(Date.now() < deadline, `the watch never showed the job: ${output.stderr}`);
    await sleep(20);
  }
  child.kill('SIGSTOP'); // as Ctrl-Z does: the process reads nothing, its connection stays up
  const emitted = await emitUntilEnded(server, 'grpc', 'Jobs/WatchJob', 2048);
  assert.equal(await endedCount(server, 'grpc', 'Jobs/WatchJob'), 1, `the stalled watch was ended (${emitted} events of 8 KiB emitted)`);
  child.kill('SIGCONT');
  const [code] = await exited;
  assert.equal(code, 5, output.stderr.slice(-600)); // the progress lines carry 8 KiB each
  assert.equal(
    output.stderr.trimEnd().split('\n').at(-1),
    `fleetprune: job ${JOB}: the server ended the watch because this client did not read its events in time (the client read too slowly: over 262144 bytes waited to be sent for 0.3 s); the job goes on: \`fleetprune jobs watch ${JOB}\` follows it again (is its output read as it comes?)`,
  );
});
