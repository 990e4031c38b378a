import type { Request, Response } from 'express';

/** A text/event-stream response: `send(event, data)` writes one event; closes when the client goes. */
export interface EventStream {
  send(event: string, data: unknown): void;
  end(): void;
  readonly closed: boolean;
  /** Runs `listener` when the stream closes, or at once if it already has. */
  onClose(listener: () => void): void;
}

export function openEventStream(req: Request, res: Response): EventStream {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  let closed = false;
  const listeners: (() => void)[] = [];
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
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
      res.write(`id: ${++id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
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
