import type { Request, Response } from 'express';
import type { StalledStreams } from '../app/stalled-streams.ts';

/** The stalled-reader policy of one event stream, and the route that names it in the log and the counter. */
export interface EventStreamGuarding {
  policy: StalledStreams;
  route: string;
}

/** A text/event-stream response: `send(event, data)` writes one event; closes when the client goes. */
export interface EventStream {
  send(event: string, data: unknown): void;
  end(): void;
  readonly closed: boolean;
  /** Runs `listener` when the stream closes, or at once if it already has. */
  onClose(listener: () => void): void;
}

/**
 * Writes go out as they come; a client that stops reading leaves them in `res.writableLength`
 * (the response's and its socket's unsent bytes). Once that stays over the policy's budget for its
 * grace period (server/app/stalled-streams.ts) the connection is destroyed: --idle-timeout alone
 * lets the backlog grow until it fires, and never fires for a client that reads a byte now and then.
 */
export function openEventStream(req: Request, res: Response, guarding: EventStreamGuarding): EventStream {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  let closed = false;
  const listeners: (() => void)[] = [];
  const guard = guarding.policy.guard(
    () => res.writableLength,
    () => {
      guarding.policy.ended({ api: 'sse', stream: guarding.route, target: req.originalUrl, peer: peerOf(req), unsentBytes: res.writableLength });
      res.destroy();
    },
  );
  const write = (text: string) => {
    // Ended by the server (its shutdown's last event, a revoked token's) before 'close' came: a
    // write after the end would be an 'error' event on the response, which nothing handles.
    if (res.writableEnded || res.destroyed) return;
    res.write(text);
    guard.check();
  };
  res.on('drain', () => guard.check());
  // Watched until the response is gone, not only until it is ended: an ended stream's backlog
  // still waits for its client.
  res.on('close', () => guard.stop());
  const heartbeat = setInterval(() => write(': keep-alive\n\n'), 15_000);
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    for (const listener of listeners) listener();
  };
  req.on('close', close);
  res.on('close', close); // also when the server ends it (its token revoked)
  if (req.method === 'HEAD') {
    // HEAD gets the stream's headers only: a stream never ends by itself, so holding it would hang the client.
    res.end();
    close();
  }
  let id = 0;
  return {
    send(event, data) {
      if (closed) return;
      write(`id: ${++id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      if (!closed) res.end();
      close();
    },
    get closed() {
      return closed;
    },
    onClose(listener) {
      // The client may have gone while the caller was still subscribing: run the listener now.
      if (closed) listener();
      else listeners.push(listener);
    },
  };
}

function peerOf(req: Request): string {
  const { remoteAddress, remotePort } = req.socket;
  return remoteAddress === undefined ? 'unknown' : `${remoteAddress}:${remotePort}`;
}
