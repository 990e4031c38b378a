import http from 'node:http';
import type net from 'node:net';

/**
 * A real HTTP server on an ephemeral port standing in for a misbehaving metrics backend (a
 * Prometheus behind a broken proxy, a wrong URL…). close() also drops hanging connections.
 */
export interface MisbehavingServer {
  readonly url: string;
  /** Requests received, as method and path. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function misbehavingServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<MisbehavingServer> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A Prometheus API answer with one instant-vector sample whose value is `value` (verbatim), timed `at` (now: the time a query asks for). */
export function vectorAnswer(value: string, labels: Record<string, string> = {}, at = Date.now() / 1000): string {
  return JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: labels, value: [at, value] }] } });
}
