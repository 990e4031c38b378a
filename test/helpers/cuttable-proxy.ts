import net from 'node:net';
import type { TestContext } from 'node:test';
import { deferCleanup } from './cleanup.ts';

/**
 * A TCP proxy to a real service (PostgreSQL, a broker) on an ephemeral port, whose link a test can
 * cut (open connections reset, new ones refused), stall (connections stay open but nothing goes
 * through: a service that does not answer) and restore: an outage of the service as its client
 * sees it, without stopping the service other tests share.
 */
export interface CuttableProxy {
  readonly port: number;
  cut(): void;
  stall(): void;
  restore(): void;
}

export async function cuttableProxy(t: TestContext, target: { host: string; port: number }): Promise<CuttableProxy> {
  const sockets = new Set<net.Socket>();
  let state: 'open' | 'cut' | 'stalled' = 'open';
  const track = (socket: net.Socket, peer?: net.Socket) => {
    sockets.add(socket);
    socket.on('error', () => {}); // a cut resets both sides
    socket.on('close', () => {
      sockets.delete(socket);
      peer?.destroy();
    });
  };
  const proxy = net.createServer((client) => {
    if (state === 'cut') return client.destroy();
    if (state === 'stalled') return track(client); // accepted, never answered
    const upstream = net.connect(target.port, target.host);
    track(client, upstream);
    track(upstream, client);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  // Closed after whatever the test started through it later (deferred cleanups run last first).
  deferCleanup(t, () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => proxy.close(() => resolve()));
  });
  return {
    port: (proxy.address() as net.AddressInfo).port,
    cut() {
      state = 'cut';
      for (const socket of sockets) socket.destroy();
    },
    stall() {
      state = 'stalled';
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    /** New connections go through again; those a stall held are reset (their requests are lost anyway). */
    restore() {
      if (state === 'stalled') for (const socket of sockets) socket.destroy();
      state = 'open';
    },
  };
}
