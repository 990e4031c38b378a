import http, { STATUS_CODES, type RequestListener } from 'node:http';
import type { Duplex } from 'node:stream';

export interface DeviceHttpLimits {
  /** The request's headers must all arrive within this. */
  headersTimeoutMs: number;
  /** The whole request, its body (at most 1 MiB) included, must arrive within this. */
  requestTimeoutMs: number;
  /** How often the server looks for requests over their time. */
  checkIntervalMs: number;
}

/**
 * A client that sends a few bytes and stalls (slowloris) holds a socket of the device until these
 * run out: Node's own defaults (300 s for a request, checked every 30 s) let a handful of such
 * clients hold the device's sockets for minutes. A predict body is at most 1 MiB.
 */
export const DEVICE_HTTP_LIMITS: DeviceHttpLimits = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, checkIntervalMs: 1_000 };

/**
 * Told of each request Node refused before the API saw it, with the status it was answered and,
 * when its headers had arrived (a body too slow), the path it was for.
 */
export type RefusalListener = (status: number, path: string | undefined) => void;

/**
 * The HTTP server of the device's API (POST /v1/predict, /metrics, /healthz): `app` with the limits
 * above. A request Node refuses before `app` sees it (malformed, headers too large, too slow) is
 * answered as the API answers its own errors, `{"error": "..."}`, not with a bare status line, and
 * told to `onRefused` (the agent counts it in its metrics).
 */
export function createDeviceHttpServer(app: RequestListener, limits: DeviceHttpLimits = DEVICE_HTTP_LIMITS, onRefused: RefusalListener = () => {}): http.Server {
  const server = http.createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs }, app);
  // Node times out a request's headers and its whole request with the same error code: which limit
  // ran out is told by whether the socket's current request got past its headers (its path, here).
  const pathOfCurrentRequest = new WeakMap<object, string>();
  server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
    pathOfCurrentRequest.set(request.socket, (request.url ?? '').split('?')[0]!);
    response.on('close', () => pathOfCurrentRequest.delete(request.socket));
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const path = pathOfCurrentRequest.get(socket);
    const status = answerClientError(error, socket, limits, path !== undefined);
    if (status !== undefined) onRefused(status, path);
  });
  return server;
}

/** Answers the refused request and returns its status; undefined when nothing could be answered. */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex, limits: DeviceHttpLimits, headersArrived: boolean): number | undefined {
  // Gone already, or a response has begun on it (as Node's own handler judges): nothing can be answered.
  if (error.code === 'ECONNRESET' || !socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten !== 0) {
    socket.destroy();
    return undefined;
  }
  const [status, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, headersArrived ? `the request did not arrive in ${limits.requestTimeoutMs / 1000} s` : `the request's headers did not arrive in ${limits.headersTimeoutMs / 1000} s`]
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'the request\'s headers are larger than the server takes']
        : [400, `malformed HTTP request${error.code ? ` (${error.code})` : ''}`];
  const body = JSON.stringify({ error: message });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  return status;
}
