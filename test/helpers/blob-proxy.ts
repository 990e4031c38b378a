import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

/**
 * An HTTP proxy in front of a server (set `target` to its URL) whose artifact blob downloads a
 * test can make fail (`missing`: answered 404, a blob the server lost for a while, which a device
 * refuses at once; `unavailable`: answered 503, which it takes again until it succeeds) or hold (`held`: kept waiting
 * until `releaseAll`, a download in progress). Everything else is forwarded as it is.
 */
export class BlobProxy {
  target = '';
  readonly missing = new Set<string>();
  /** Answered 503 (the server or its blob store briefly down), counted in `unavailableAnswers`. */
  readonly unavailable = new Set<string>();
  unavailableAnswers = 0;
  readonly held = new Set<string>();
  readonly waiting: { blob: string; release: () => void }[] = [];
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(t: TestContext): Promise<BlobProxy> {
    let proxy!: BlobProxy;
    const server = createServer((req, res) => {
      const forward = () => {
        const target = new URL(proxy.target);
        const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        upstream.on('error', () => res.destroy());
        req.pipe(upstream);
      };
      const blob = /^\/api\/blobs\/([0-9a-f]{64})/.exec(req.url ?? '')?.[1];
      if (blob && proxy.unavailable.has(blob)) {
        proxy.unavailableAnswers++;
        res.writeHead(503, { 'content-type': 'text/plain' }).end('unavailable');
      } else if (blob && proxy.missing.has(blob)) res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not_found","message":"no such blob"}}');
      else if (blob && proxy.held.has(blob)) proxy.waiting.push({ blob, release: forward });
      else forward();
    });
    proxy = new BlobProxy(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    });
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Lets every held download through, and holds no blob any more. */
  releaseAll(): void {
    this.held.clear();
    for (const held of this.waiting.splice(0)) held.release();
  }
}
