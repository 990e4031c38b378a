import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  path: string;
  range: string | undefined;
  ifRange: string | undefined;
  authorization: string | undefined;
  at: number;
}

/** Answers a request itself (returns true) or lets it through to the upstream server (false). */
export type HostileHandler = (request: IncomingMessage, response: ServerResponse, seen: SeenRequest) => boolean | Promise<boolean>;

/**
 * A misbehaving server/proxy for the agent's artifact routes: a real node:http server on an
 * ephemeral port that forwards to `upstream` (the ArtifactHttpServer fixture) unless `handler`
 * answers first — with a redirect, a lying Content-Length, a stall, a trickle, a reset, ...
 */
export class HostileHttpServer {
  readonly seen: SeenRequest[] = [];
  handler: HostileHandler | undefined;
  readonly #server: Server;
  #url = '';

  private constructor(readonly upstream: string) {
    this.#server = createServer((request, response) => {
      const seen: SeenRequest = {
        path: new URL(request.url ?? '/', 'http://x').pathname,
        range: request.headers.range,
        ifRange: request.headers['if-range'] as string | undefined,
        authorization: request.headers.authorization,
        at: Date.now(),
      };
      this.seen.push(seen);
      void (async () => {
        if (this.handler && (await this.handler(request, response, seen))) return;
        this.#forward(request, response);
      })().catch(() => response.destroy());
    });
  }

  static async start(upstream: string): Promise<HostileHttpServer> {
    const instance = new HostileHttpServer(upstream);
    await new Promise<void>((resolve) => instance.#server.listen(0, '127.0.0.1', resolve));
    instance.#url = `http://127.0.0.1:${(instance.#server.address() as AddressInfo).port}`;
    return instance;
  }

  get url(): string {
    return this.#url;
  }

  requestsTo(pathPrefix: string): SeenRequest[] {
    return this.seen.filter((request) => request.path.startsWith(pathPrefix));
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #forward(request: IncomingMessage, response: ServerResponse): void {
    const target = new URL(request.url ?? '/', this.upstream);
    const headers = { ...request.headers, host: target.host };
    const upstream = httpRequest(target, { method: request.method, headers }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(response);
    });
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  }
}

/** Writes `byte` every `everyMs` until the client goes away (a server trickling just under any idle timeout). */
export async function trickle(response: ServerResponse, body: Buffer, bytesPerTick: number, everyMs: number, start = 0): Promise<void> {
  for (let offset = start; offset < body.length && !response.destroyed; offset += bytesPerTick) {
    response.write(body.subarray(offset, offset + bytesPerTick));
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  if (!response.destroyed) response.end();
}
