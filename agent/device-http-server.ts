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
 * The HTTP server of the device's API (POST /v1/predict, /metrics, /healthz): `app` with the limits
 * above. A request Node refuses before `app` sees it (malformed, headers too large, too slow) is
 * answered as the API answers its own errors, `{"error": "..."}`, not with a bare status line.
 */
export function createDeviceHttpServer(app: RequestListener, limits: DeviceHttpLimits = DEVICE_HTTP_LIMITS): http.Server {
  const server = http.createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs }, app);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => answerClientError(error, socket, limits));
  return server;
}

function answerClientError(error: NodeJS.ErrnoException, socket: Duplex, limits: DeviceHttpLimits): void {
  // Gone already, or a response has begun on it (as Node's own handler judges): nothing can be answered.
  if (error.code === 'ECONNRESET' || !socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten !== 0) {
    socket.destroy();
    return;
  }
  const [status, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, `the request did not arrive in ${limits.requestTimeoutMs / 1000} s`]
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'the request\'s headers are larger than the server takes']
        : [400, `malformed HTTP request${error.code ? ` (${error.code})` : ''}`];
  const body = JSON.stringify({ error: message });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
