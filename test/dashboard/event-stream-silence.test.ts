import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Api } from '../../server/dashboard/ui/api.ts';

/** An event stream that sends one event, then a keep-alive comment every `keepAliveMs` (or, with none, nothing more). */
async function eventServer(t: TestContext, keepAliveMs?: number): Promise<string> {
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('id: 1\nevent: rollout\ndata: {"phase":"Paused"}\n\n');
    if (keepAliveMs !== undefined) {
      const timer = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
      timers.add(timer);
      res.on('close', () => (clearInterval(timer), timers.delete(timer)));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('an event stream that goes silent (a hung server, a dropped connection) is given up with a message, not followed forever', { timeout: 20_000 }, async (t) => {
  const origin = await eventServer(t);
  // One request first: the first fetch of a process loads its HTTP client, which on a loaded
  // machine can take longer than the silence limit, before the stream is even opened.
  const warmUp = new AbortController();
  await fetch(origin, { signal: warmUp.signal }).then(() => warmUp.abort());
  const api = new Api('token', origin);
  const events: unknown[] = [];
  let opened = false;
  await assert.rejects(
    api.stream('/rollouts/r/events', (type, data) => events.push([type, data]), new AbortController().signal, () => (opened = true), 1_000),
    { message: 'the event stream was silent for 1 s' },
  );
  assert.equal(opened, true);
  assert.deepEqual(events, [['rollout', { phase: 'Paused' }]], 'what came before the silence was delivered');
});

test("the server's keep-alive comments keep a quiet event stream open, also across a stall of the process, and the caller's abort still ends it", { timeout: 20_000 }, async (t) => {
  const api = new Api('token', await eventServer(t, 50));
  const caller = new AbortController();
  const ended = api.stream('/rollouts/r/events', () => {}, caller.signal, undefined, 500).then(
    () => 'resolved',
    (error: Error) => (caller.signal.aborted ? 'aborted by the caller' : `failed: ${error.message}`),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  // The process (server and page alike) stalls for twice the silence the stream tolerates, as a
  // loaded machine or a busy page does: the keep-alives it then finds waiting count.
  const stalledUntil = Date.now() + 1_000;
  while (Date.now() < stalledUntil);
  // Then three times that silence more, with no event: only the comments arrive.
  const outcome = await Promise.race([ended, new Promise((resolve) => setTimeout(() => resolve('still open'), 1_500))]);
  assert.equal(outcome, 'still open');
  caller.abort();
  assert.equal(await ended, 'aborted by the caller');
});
