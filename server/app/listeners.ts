import { Server as GrpcServer, ServerCredentials, setLogger } from '@grpc/grpc-js';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIPv6, type AddressInfo, type Socket } from 'node:net';
import type { RequestListener } from 'node:http';
import { format } from 'node:util';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { Listener } from './server-module.ts';
import { CUT_OFF_BY_SHUTDOWN } from '../http/send-error.ts';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/**
 * How long an idle keep-alive connection is kept: longer than the 60 s a proxy in front keeps its
 * upstream connections (nginx's and load balancers' default), not node's 5 s. A proxy or client
 * sending its next request just as the server closed the connection got "socket hang up" /
 * "fetch failed" (seen with fetch under load). Clients read it in the Keep-Alive header and let
 * the connection go a second or two before. Bounded, so idle clients do not hold descriptors long.
 */
export const KEEP_ALIVE_MS = 65_000;

/**
 * Binds the REST app over HTTP or HTTPS. A connection that moves no byte either way for
 * `idleTimeoutMs` is closed when the client is the one stalling (see closeIfClientStalls).
 */
export async function listenHttp(app: RequestListener, host: string, port: number, tls: TlsFiles | null, idleTimeoutMs: number): Promise<Listener> {
  let server: HttpServer;
  try {
    server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, app) : createHttpServer(app);
  } catch (error) {
    throw new UserError(`--tls-cert/--tls-key: not a usable certificate and key (${errorMessage(error)})`);
  }
  server.headersTimeout = 60_000;
  server.requestTimeout = 0; // big uploads and SSE streams may take long: progress is what counts
  server.timeout = idleTimeoutMs;
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  closeIfClientStalls(server, idleTimeoutMs);
  const underway = requestsUnderway(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new UserError(`--http-port: cannot listen on ${host}:${port} (${errorMessage(error)})`)));
    server.listen(port, host, resolve);
  });
  return {
    name: 'http',
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void endEventStreams(underway).then(() => {
          cutOffByShutdown(underway);
          server.closeAllConnections();
        });
      }),
  };
}

/** How long the server stopping waits for its event streams' last events to be written. */
const LAST_EVENT_WAIT_MS = 1_000;

/**
 * Event streams open when the server stops end with an `error` event saying so (code
 * `unavailable`), as one whose token is revoked ends with one saying that: a client (the
 * dashboard, `curl -N`) is told the stream ended because the server went, not left to guess from
 * a dropped connection. Waits (briefly) for those events to be written before connections close.
 */
async function endEventStreams(underway: ReadonlySet<{ req: IncomingMessage; res: ServerResponse }>): Promise<void> {
  const ending: Promise<void>[] = [];
  for (const { res } of underway) {
    if (res.writableEnded || !res.headersSent || !res.getHeader('content-type')?.toString().startsWith('text/event-stream')) continue;
    ending.push(new Promise<void>((resolve) => {
      res.once('close', resolve);
      res.end(`event: error\ndata: ${JSON.stringify({ error: { code: 'unavailable', message: 'the server is stopping: reconnect once it is back (or to another server sharing its database)' } })}\n\n`, resolve);
    }));
  }
  if (ending.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(ending), new Promise<void>((resolve) => (timer = setTimeout(resolve, LAST_EVENT_WAIT_MS)))]);
  clearTimeout(timer);
}

/** Requests whose response has not finished, as the server receives them. */
function requestsUnderway(server: HttpServer): Set<{ req: IncomingMessage; res: ServerResponse }> {
  const underway = new Set<{ req: IncomingMessage; res: ServerResponse }>();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const entry = { req, res };
    underway.add(entry);
    res.once('close', () => underway.delete(entry));
  });
  return underway;
}

/**
 * Requests still under way when the server stops (an upload's body still arriving) are marked for
 * sendError's log before their connections are closed: the server cut them off, not their
 * clients. (No 503 is written first: a response ended before its request body is read leaves the
 * handler reading a body that never ends, and a client still sending sees a reset either way.)
 */
function cutOffByShutdown(underway: ReadonlySet<{ req: IncomingMessage; res: ServerResponse }>): void {
  for (const { req } of underway) (req as IncomingMessage & { [CUT_OFF_BY_SHUTDOWN]?: true })[CUT_OFF_BY_SHUTDOWN] = true;
}

/**
 * What to do with a connection idle for `idleTimeoutMs`. Closed when the client stalls: no
 * request under way (an idle keep-alive), a request body it stopped sending, or bytes waiting for
 * it to read (a download or an event stream whose client stopped reading) — it would otherwise
 * hold its file and buffers for ever. Kept when the server is the one working (the body received,
 * nothing waiting to be sent: a slow disk, a locked database, an event stream between events):
 * cutting it would lose an answer the client is waiting for.
 */
function closeIfClientStalls(server: HttpServer, idleTimeoutMs: number): void {
  const underway = new WeakMap<Socket, { req: IncomingMessage; res: ServerResponse }>();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    underway.set(req.socket, { req, res });
    res.once('close', () => {
      if (underway.get(req.socket)?.res === res) underway.delete(req.socket);
    });
  });
  server.on('timeout', (socket: Socket) => {
    const current = underway.get(socket);
    const clientStalls = !current || !current.req.complete || socket.writableLength > 0 || current.res.writableLength > 0;
    if (clientStalls) socket.destroy();
    else socket.setTimeout(idleTimeoutMs);
  });
}

/**
 * What a failed bind says: grpc-js wraps node's error (`No address added out of total 1 resolved
 * errors: [listen EADDRINUSE: address already in use 127.0.0.1:9090]`); the HTTP and MQTT ports
 * say node's own words, and so does this one.
 */
function bindFailure(message: string): string {
  return /^No address added out of total 1 resolved errors: \[(.+)\]$/s.exec(message)?.[1] ?? message;
}

/** Binds the gRPC server, with TLS when given. */
export async function listenGrpc(server: GrpcServer, host: string, port: number, tls: TlsFiles | null): Promise<Listener> {
  const credentials = tls ? ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : ServerCredentials.createInsecure();
  // An IPv6 address in brackets: grpc-js reads `::1:0` as a name to resolve.
  const address = isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (error, actual) =>
      error ? reject(new UserError(`--grpc-port: cannot listen on ${address} (${bindFailure(error.message)})`)) : resolve(actual),
    );
  }).catch((error: unknown) => {
    server.forceShutdown();
    throw error;
  });
  return {
    name: 'grpc',
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/**
 * grpc-js logs to stderr on its own (a failed bind adds `E No address added ...` to the one-line
 * error); its lines go to the server log instead. A failed bind is reported by listenGrpc, so
 * grpc-js's own line about it is only debug output.
 */
export function routeGrpcLogs(log: Logger): void {
  const grpcLog = log.child({ component: 'grpc-js' });
  const line = (message?: unknown, ...rest: unknown[]) => withoutMetadataValues(format(message, ...rest));
  setLogger({
    error: (...args: unknown[]) => {
      const message = line(...args);
      if (message.startsWith('No address added')) grpcLog.debug(message);
      else grpcLog.warn(message);
    },
    info: (...args: unknown[]) => grpcLog.info(line(...args)),
    debug: (...args: unknown[]) => grpcLog.debug(line(...args)),
  });
}

/**
 * grpc-js drops a request's metadata entry whose value it cannot pass on (a tab, a character
 * outside printable ASCII) and says so quoting the value twice: for `authorization`, the caller's
 * whole token, a pasted non-breaking space after it being enough. The line keeps the entry's name
 * and never its value.
 */
const DROPPED_METADATA = /^Failed to add metadata entry ([^:\s]*):/;

function withoutMetadataValues(message: string): string {
  const dropped = DROPPED_METADATA.exec(message);
  if (!dropped) return message;
  return `dropped the request metadata entry ${JSON.stringify(dropped[1])}: its value holds a character metadata may not (a tab, or one outside printable ASCII); the value is not logged`;
}

/** `listening http=8080 grpc=9090 ...`, one `name=port` per listener, in the order they were bound. */
export function listeningLine(listeners: readonly Listener[]): string {
  return `listening ${listeners.map((listener) => `${listener.name}=${listener.port}`).join(' ')}`;
}

/** A wildcard bind address is no address to connect to; URLs built from it use loopback instead. */
export function reachableHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
