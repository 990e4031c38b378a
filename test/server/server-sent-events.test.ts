import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import express from 'express';
import { openEventStream, type EventStream } from '../../server/http/server-sent-events.ts';
import { StalledStreams } from '../../server/app/stalled-streams.ts';
import { ServerMetrics } from '../../server/metrics/server-metrics.ts';
import { createLogger } from '../../shared/util/log.ts';

/** An express app whose GET /events opens an event stream; resolves the stream once it is open. */
async function eventServer(t: TestContext): Promise<{ url: string; streamOpened: Promise<EventStream>; responseOpened: Promise<express.Response> }> {
  let opened: (stream: EventStream) => void;
  let responded: (res: express.Response) => void;
  const streamOpened = new Promise<EventStream>((resolve) => (opened = resolve));
  const responseOpened = new Promise<express.Response>((resolve) => (responded = resolve));
  const app = express();
  const policy = new StalledStreams({ metrics: new ServerMetrics(), log: createLogger('test', 'silent') });
  app.get('/events', (req, res) => {
    responded(res);
    opened(openEventStream(req, res, { policy, route: 'GET /events' }));
  });
  const server = await new Promise<http.Server>((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  t.after(() => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`, streamOpened, responseOpened };
}

test('an event stream whose client left before the subscriber registered still runs its close listener (no leaked watch)', async (t) => {
  const { url, streamOpened } = await eventServer(t);
  const request = http.get(url);
  request.on('error', () => {});
  await new Promise((resolve) => request.once('response', resolve));
  const stream = await streamOpened;
  let early = 0;
  stream.onClose(() => early++);
  request.destroy(); // the client goes, as a subscription is still being set up
  for (let i = 0; i < 100 && !stream.closed; i++) await delay(20);
  assert.equal(stream.closed, true);
  assert.equal(early, 1, 'a listener registered before the close runs once');
  let late = 0;
  stream.onClose(() => late++);
  assert.equal(late, 1, 'a listener registered after the close runs at once');
});

test('HEAD on an event stream answers its headers and ends, closing the stream (it does not hold the connection)', async (t) => {
  const { url, streamOpened } = await eventServer(t);
  const response = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(5_000) });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  assert.equal(await response.text(), '');
  const stream = await streamOpened;
  assert.equal(stream.closed, true);
  let closes = 0;
  stream.onClose(() => closes++);
  assert.equal(closes, 1, 'a watch registered on a HEAD stream is released at once');
  stream.send('state', { ignored: true }); // no write after the end
});

// An event stream open when the server stopped was cut without a word (the dashboard, `curl -N`,
// could not tell a server going from a network failure); it ends with an `error` event now.
test('an event stream open when the server stops ends with an error event saying so (code unavailable)', async (t) => {
  const { startTestServer } = await import('./helpers/test-server.ts');
  const server = (await startTestServer(t))!;
  const at = new Date().toISOString();
  await server.server.ctx.store.jobs.insert({ id: 'job-waiting', kind: 'prune', state: 'queued', request: {}, progress: null, result: null, error: null, createdAt: at, updatedAt: at, createdBy: 'token:test', node: 'other-node' });
  const response = await server.request('GET', '/api/jobs/job-waiting/events');
  assert.equal(response.status, 200);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  while (!text.includes('event: state')) text += (await reader.read()).value ?? '';
  const closing = server.server.close();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  await closing;
  assert.match(text, /event: error\ndata: \{"error":\{"code":"unavailable","message":"the server is stopping: reconnect once it is back \(or to another server sharing its database\)"\}\}\n\n$/);
});

// The shutdown ends an event stream's response itself (its last event); an event sent before the
// response closes (a watcher's, the keep-alive's) was a write after end: an 'error' on the
// response that nothing handled, which would have crashed the server in the middle of its stop.
test('an event sent after the response was ended, before it closed, is dropped: no write after end', async (t) => {
  const { url, streamOpened, responseOpened } = await eventServer(t);
  const request = http.get(url);
  request.on('error', () => {});
  await new Promise((resolve) => request.once('response', resolve));
  const [stream, res] = await Promise.all([streamOpened, responseOpened]);
  const errors: Error[] = [];
  res.on('error', (error) => errors.push(error));
  res.end('event: error\ndata: {}\n\n');
  stream.send('state', { late: true });
  await delay(50);
  assert.deepEqual(errors.map((error) => error.message), []);
  request.destroy();
});
