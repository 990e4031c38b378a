import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { pausedRolloutAndPage } from './dashboard-fixtures.ts';

/** A TCP proxy that can hold every byte either way (a hung server: connections accepted, no answer) and let them through again. */
async function freezableProxy(t: TestContext, target: string) {
  const { hostname, port } = new URL(target);
  let frozen = false;
  const held: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    const forward = (from: net.Socket, to: net.Socket) => from.on('data', (chunk) => (frozen ? held.push(() => to.write(chunk)) : to.write(chunk)));
    forward(client, upstream);
    forward(upstream, client);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => (client.destroy(), upstream.destroy())).on('close', () => (client.destroy(), upstream.destroy(), sockets.delete(socket)));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), server.close(() => resolve()))));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    freeze: () => void (frozen = true),
    thaw: () => {
      frozen = false;
      for (const send of held.splice(0)) send();
    },
  };
}

/**
 * A server that took the dashboard's requests and never answered left every refresh waiting
 * forever: the page said "live", no stale badge, no message, and Roll back on, as though the
 * views were current.
 */
test('a server that stops answering makes the views stale (with a message) and the actions off, and they come back when it answers', { timeout: 120_000 }, async (t) => {
  const fixture = await pausedRolloutAndPage(t, 'dismiss');
  if (!fixture) return;
  const { server } = fixture;
  const { page, pageErrors } = fixture.browser;
  const proxy = await freezableProxy(t, server.baseUrl);
  await page.goto(`${proxy.url}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  const rollback = page.locator('#rollout-detail button[data-action="rollback"]');
  assert.ok(await rollback.isEnabled());

  proxy.freeze();
  // A read waits 15 s at most; a poll is every 5 s.
  await page.locator('#stale').waitFor({ state: 'visible', timeout: 30_000 });
  assert.match(await page.locator('#error').innerText(), /^Cannot refresh: the server did not answer in 15 s\. The views show the state of \d\d:\d\d:\d\d; actions are off until a refresh succeeds\.$/);
  assert.equal(await rollback.isEnabled(), false, 'Roll back is off while the views are stale');
  // The event stream is still open (the proxy holds its bytes), but the page does not call itself live beside stale.
  assert.equal(await page.locator('#live').isVisible(), false, 'no "live" badge while the views are stale');

  proxy.thaw();
  await page.locator('#stale').waitFor({ state: 'hidden', timeout: 30_000 });
  assert.ok(await rollback.isEnabled(), 'Roll back is on again');
  assert.equal(await page.locator('#live').innerText(), 'live');
  assert.deepEqual(pageErrors, []);
});
