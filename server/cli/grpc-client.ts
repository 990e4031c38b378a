import { credentials, Metadata, status as GrpcStatus, type Client, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns/promises';
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { loadFleetpruneProto, type FleetpruneProto } from '../../shared/proto/load-proto.ts';
import { bearerTokenProblem } from '../../shared/protocol/bearer-token.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { printable } from '../../shared/util/printable.ts';
import { RETRY_LATER_TRAILER, STORE_UNAVAILABLE_PREFIX } from '../app/service-error.ts';

export interface ConnectionFlags {
  server?: string;
  token?: string;
  tlsCa?: string;
}

/** Adds --server, --token and --tls-ca to a command. */
export function withConnectionOptions(command: Command): Command {
  return command
    .option('--server <host[:port]>', 'gRPC address of the fleetprune server (or FLEETPRUNE_SERVER; default 127.0.0.1:9090, port 9090 when only a host is given)')
    .option('--token <token>', 'bearer token (or FLEETPRUNE_TOKEN)')
    .option('--tls-ca <file>', 'connect over TLS, trusting this CA certificate (or FLEETPRUNE_TLS_CA)');
}

/** How often the CLI pings the server on an open connection, and how long it waits for the answer (see client()). */
const KEEPALIVE_MS = 15_000;
const PING_ANSWER_MS = 10_000;

/** How long a unary call waits for its answer. */
const CALL_DEADLINE_MS = 60_000;

/** Calls that read and change nothing (the proto's List*, Get*, Watch*, DownloadBlob, CheckPush). */
const READ_ONLY_METHOD = /^(List|Get|Watch|Download|Check)[A-Z]/;

/** How long explain() waits for its own lookup of a host name grpc-js could not resolve. */
const LOOKUP_AGAIN_MS = 3_000;

/** grpc-js's details for a host name it could not resolve, whatever the reason. */
const NAME_NOT_RESOLVED = /^Name resolution failed/;

/**
 * The exit code of a command that did not get its answer because the server could not be reached
 * or stopped answering (refused connection, a DNS server that did not answer, dropped link, its
 * database down, no answer in time, a watch it ended): a state a script may wait out and retry,
 * unlike a refusal or bad input (2).
 * A wrong address that cannot work as given (a host name that does not resolve, a TLS mismatch,
 * another service's port) stays 2.
 */
export const UNREACHABLE_EXIT_CODE = 5;

/**
 * A watch of a job or rollout that the server ended before it finished, as one line that says why
 * and how to follow it again: the server shut down, restarted or stopped answering (grpc-js says
 * "Call cancelled", which reads as if the job or rollout had been cancelled; `afterDown` ends that
 * line), or this client read its events too slowly (its output piped to something that stopped
 * reading, a suspended terminal) and the server gave up on it. Exit 5: nothing was refused, and
 * watching again may work. Any other error is returned as it is.
 */
export function watchEndedEarly(watched: { noun: 'job' | 'rollout'; id: string; afterDown: string }, error: unknown): unknown {
  const { noun, id, afterDown } = watched;
  const cause = error instanceof UserError ? (error.cause as { code?: number; details?: string } | undefined) : undefined;
  if (!cause) return error;
  const details = cause.details || (error as UserError).message;
  if (cause.code === GrpcStatus.RESOURCE_EXHAUSTED && /read too slowly/.test(details)) {
    return new UserError(
      `${noun} ${id}: the server ended the watch because this client did not read its events in time (${details.replace(/; watch again to resume$/, '')}); ` +
        `the ${noun} goes on: \`fleetprune ${noun === 'job' ? 'jobs' : 'rollout'} watch ${id}\` follows it again (is its output read as it comes?)`,
      { exitCode: UNREACHABLE_EXIT_CODE, cause: error },
    );
  }
  if (cause.code !== GrpcStatus.CANCELLED && cause.code !== GrpcStatus.UNAVAILABLE) return error;
  // A dropped connection is also what a suspended client gets (Ctrl-Z, kill -STOP): it answered no
  // keep-alive ping, and the server closed the connection without a status for its calls.
  const orThisClient = /^Connection dropped/.test(details) ? ' (or this command was suspended too long to answer its keep-alive pings)' : '';
  return new UserError(`${noun} ${id}: the server ended the watch before the ${noun} finished (${details}); it may have shut down, restarted or stopped answering${orThisClient}${afterDown}`, {
    exitCode: UNREACHABLE_EXIT_CODE,
    cause: error,
  });
}

/** A connection to the server's gRPC API with one-line errors for every failure. */
export class ServerConnection {
  readonly address: string;
  readonly #metadata = new Metadata();
  readonly #clients: Client[] = [];
  readonly #proto: FleetpruneProto = loadFleetpruneProto();
  readonly #credentials;

  /** How the host name is looked up again when grpc-js could not resolve it (see explain()); a test may replace it. */
  readonly #lookup: (host: string) => Promise<unknown>;

  constructor(flags: ConnectionFlags, options: { lookup?: (host: string) => Promise<unknown> } = {}) {
    this.#lookup = options.lookup ?? dnsLookup;
    // An empty variable (`FLEETPRUNE_SERVER=` in an env file) counts as unset, as for the server's own.
    const given = flags.server ?? (process.env.FLEETPRUNE_SERVER || undefined) ?? `127.0.0.1:${DEFAULT_GRPC_PORT}`;
    checkServerAddress(given, flags.server !== undefined ? '--server' : 'FLEETPRUNE_SERVER');
    this.address = withDefaultPort(given);
    // An empty flag (`--token "$T"` with T unset) is refused, not taken for the variable's value or for none.
    if (flags.token === '') throw new UserError('--token: empty (was the variable it was given from unset?); pass the token, or leave the flag out to use FLEETPRUNE_TOKEN');
    const token = flags.token ?? (process.env.FLEETPRUNE_TOKEN || undefined);
    if (!token) throw new UserError('--token: no token given (pass --token or set FLEETPRUNE_TOKEN)');
    checkToken(token, flags.token !== undefined ? '--token' : 'FLEETPRUNE_TOKEN');
    this.#metadata.set('authorization', `Bearer ${token}`);
    // An empty --tls-ca (`--tls-ca "$CA"` with CA unset) would connect without TLS, sending the token in the clear: refused.
    if (flags.tlsCa === '') throw new UserError('--tls-ca: empty (was the variable it was given from unset?); give the CA certificate file, or leave the flag out (FLEETPRUNE_TLS_CA, or no TLS)');
    const ca = flags.tlsCa ?? (process.env.FLEETPRUNE_TLS_CA || undefined);
    if (ca) {
      this.#credentials = credentials.createSsl(readCaCertificates(ca, flags.tlsCa !== undefined ? '--tls-ca' : 'FLEETPRUNE_TLS_CA'));
      if (isIP(hostOf(this.address))) ignoreIpServernameWarning();
    } else {
      this.#credentials = credentials.createInsecure();
    }
    this.#tls = ca !== undefined && ca !== '';
  }

  readonly #tls: boolean;

  /** The call metadata (the bearer token), for calls made on client() directly. */
  get metadata(): Metadata {
    return this.#metadata;
  }

  client(service: keyof FleetpruneProto): Client {
    // Answers of any size: grpc-js refuses those over 4 MiB by default, and the detail of a rollout
    // over thousands of devices (its decision log names them in every query) is larger.
    // Pings every KEEPALIVE_MS, also while a watch waits for its next event: a server that stops
    // answering (a frozen process, a host gone without closing the connection) fails the call
    // within KEEPALIVE_MS + PING_ANSWER_MS instead of holding `rollout watch` for good.
    const client = new this.#proto[service](this.address, this.#credentials, {
      'grpc.max_receive_message_length': -1,
      'grpc.keepalive_time_ms': KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': PING_ANSWER_MS,
    });
    this.#clients.push(client);
    return client;
  }

  /** `deadlineMs`: how long to wait for the answer (default CALL_DEADLINE_MS), for calls whose work is known to take longer. */
  unary<Res>(service: keyof FleetpruneProto, method: string, request: object, options: { deadlineMs?: number } = {}): Promise<Res> {
    const client = this.client(service) as unknown as Record<string, Function>;
    const deadlineMs = options.deadlineMs ?? CALL_DEADLINE_MS;
    return new Promise((resolve, reject) => {
      client[method]!.call(client, request, this.#metadata, { deadline: Date.now() + deadlineMs }, (error: GrpcError | null, response: Res) =>
        error ? this.explain(error, method, deadlineMs).then(reject, reject) : resolve(response),
      );
    });
  }

  /** A server stream; each message goes to `onMessage`; resolves at its end. */
  stream<Msg>(service: keyof FleetpruneProto, method: string, request: object, onMessage: (message: Msg) => void): Promise<void> {
    const client = this.client(service) as unknown as Record<string, Function>;
    return new Promise((resolve, reject) => {
      const call = client[method]!.call(client, request, this.#metadata);
      call.on('data', onMessage);
      // grpc-js may also end the stream after an error: the end must not settle it first (explain() takes a turn or more).
      let failed = false;
      call.on('error', (error: GrpcError) => {
        failed = true;
        void this.explain(error, method).then(reject, reject);
      });
      call.on('end', () => failed || resolve());
    });
  }

  /** A client stream fed by `messages`. */
  upload<Res>(service: keyof FleetpruneProto, method: string, messages: AsyncIterable<object>): Promise<Res> {
    const client = this.client(service) as unknown as Record<string, Function>;
    return new Promise((resolve, reject) => {
      const call = client[method]!.call(client, this.#metadata, (error: GrpcError | null, response: Res) =>
        error ? this.explain(error, method).then(reject, reject) : resolve(response),
      );
      (async () => {
        for await (const message of messages) {
          if (!call.write(message)) await new Promise((drained) => call.once('drain', drained));
        }
        call.end();
      })().catch((error: unknown) => {
        call.cancel();
        reject(error);
      });
    });
  }

  close(): void {
    for (const client of this.#clients) client.close();
  }

  /**
   * The error as one line for the user; the gRPC error is its cause (callers may read its code).
   * `method`: the call that failed, whose kind (a read, or a change) says what a lost answer means.
   */
  describe(error: GrpcError, method?: string, deadlineMs = CALL_DEADLINE_MS): UserError {
    const described = this.#describe(error, method, deadlineMs);
    return new UserError(described.message, { exitCode: described.exitCode, cause: error });
  }

  /**
   * describe(), and for a host name grpc-js could not resolve, why: grpc-js says only "Name
   * resolution failed", for a name that does not exist (a typo: exit 2) as for a DNS server that
   * did not answer (EAI_AGAIN: exit 5, as an unreachable server, since trying again may work).
   */
  async explain(error: GrpcError, method?: string, deadlineMs = CALL_DEADLINE_MS): Promise<UserError> {
    const described = this.describe(error, method, deadlineMs);
    if (error.code !== GrpcStatus.UNAVAILABLE || !NAME_NOT_RESOLVED.test(error.details ?? '')) return described;
    const host = hostOf(this.address.replace(/^dns:(\/\/[^/]*\/)?/, ''));
    // Not as long as the resolver's own timeout again: a DNS server that does not answer now is the case to tell.
    let timer: NodeJS.Timeout | undefined;
    const outOfTime = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('no answer'), LOOKUP_AGAIN_MS)));
    const why = await Promise.race([
      Promise.resolve()
        .then(() => this.#lookup(host))
        .then(
          () => 'resolves now',
          (lookupError: NodeJS.ErrnoException) => lookupError?.code ?? 'unknown',
        ),
      outOfTime,
    ]).finally(() => clearTimeout(timer));
    if (why === 'ENOTFOUND' || why === 'ENODATA') return described;
    const detail =
      why === 'resolves now'
        ? 'its lookup failed a moment ago and works now'
        : why === 'no answer'
          ? `no answer within ${LOOKUP_AGAIN_MS / 1000} s: the DNS server did not answer`
          : why === 'EAI_AGAIN'
            ? 'EAI_AGAIN: the DNS server did not answer'
            : why;
    return new UserError(`cannot reach the server at ${this.address}: the host name ${host} could not be looked up (${detail}); try again`, { exitCode: UNREACHABLE_EXIT_CODE, cause: error });
  }


  #describe(error: GrpcError, method: string | undefined, deadlineMs: number): UserError {
    // An answer lost on the way: a read changed nothing and may simply be tried again.
    const unanswered =
      method !== undefined && READ_ONLY_METHOD.test(method)
        ? 'it asked for no change: try again'
        : 'a change asked for may have been made all the same: check (list or status) before retrying';
    // Something that speaks HTTP/2 but not gRPC answered (another service, a proxy's error page):
    // grpc-js reports its HTTP status, or a stream that ended without a gRPC status.
    const notGrpc = /^Received HTTP status code (\d+)/.exec(error.details ?? '')?.[1] ?? (/Call ended without gRPC status/.test(error.details ?? '') ? 'without a gRPC status' : undefined);
    if (notGrpc !== undefined) {
      const answered = /^\d+$/.test(notGrpc) ? `HTTP ${notGrpc}` : notGrpc;
      return new UserError(`the server at ${this.address} answered ${answered}, not as a fleetprune server does: is that its gRPC port, grpc= on its start-up line (and a proxy in between set to pass gRPC through)?`);
    }
    switch (error.code) {
      case GrpcStatus.UNAVAILABLE: {
        // The server answered that it cannot do it now and may shortly (shutting down, taking over): nothing was done.
        if (error.metadata?.get(RETRY_LATER_TRAILER).length) return new UserError(error.details, { exitCode: UNREACHABLE_EXIT_CODE });
        // The server answered: its database did not.
        if (error.details.startsWith(STORE_UNAVAILABLE_PREFIX)) return new UserError(`the server at ${this.address} answered: ${error.details}`, { exitCode: UNREACHABLE_EXIT_CODE });
        // Connected, then lost: the server stopped answering pings (a frozen process, a host gone)
        // or the link broke, while the call was on its way.
        if (/^Connection dropped/.test(error.details)) {
          return new UserError(`the connection to the server at ${this.address} dropped before it answered (it stopped answering, or the network failed); ${unanswered}`, { exitCode: UNREACHABLE_EXIT_CODE });
        }
        // grpc-js: "Name resolution failed for target dns:HOST:PORT", a typo in the host most often.
        if (NAME_NOT_RESOLVED.test(error.details)) {
          return new UserError(`cannot reach the server at ${this.address}: the host name ${hostOf(this.address.replace(/^dns:(\/\/[^/]*\/)?/, ''))} does not resolve (a typo?)`);
        }
        // The server answered, but its certificate did not verify (another CA, another name).
        const tlsFailure = this.#tls ? certificateFailure(error.details) : undefined;
        if (tlsFailure) {
          return new UserError(`cannot connect to the server at ${this.address} over TLS: ${tlsFailure} (${certificateHint(tlsFailure)})`);
        }
        if (this.#tls && notTls(error.details)) {
          return new UserError(`cannot connect to the server at ${this.address} over TLS: it does not speak TLS there (a server without --tls-cert needs no --tls-ca; or is that its HTTP port, not grpc= on its start-up line?)`);
        }
        if (this.#tls && /no application protocol/i.test(error.details)) {
          return new UserError(`cannot connect to the server at ${this.address} over TLS: it speaks TLS there but not gRPC (is that its HTTP port, not grpc= on its start-up line?)`);
        }
        if (this.#tls && /alert certificate required|alert handshake failure/i.test(error.details)) {
          return new UserError(`cannot connect to the server at ${this.address} over TLS: it asks for a client certificate, which fleetprune does not send (fleetprune servers do not ask for one: is that another service?)`);
        }
        const code = /E[A-Z]{4,}/.exec(error.details)?.[0];
        // Reset as it opened, before any HTTP/2: what a service that speaks no HTTP/2 does with the
        // gRPC preface, an MQTT broker above all (1883 beside a server's ports), and what a load
        // balancer with no healthy server behind it does (a failover): the two look the same, so a
        // script may retry (exit 5), and the line says what to check.
        if (code === 'ECONNRESET' && /^No connection established/.test(error.details)) {
          return new UserError(
            `cannot reach the server at ${this.address} (ECONNRESET: it reset the connection as it opened, as a port that is no gRPC server's does, an MQTT broker's 1883 say; ` +
              'is that its gRPC port, grpc= on its start-up line? If it is, something in between reset the connection: try again)',
            { exitCode: UNREACHABLE_EXIT_CODE },
          );
        }
        // Something answered but did not speak plaintext gRPC: the server's HTTP port (8080 given
        // for 9090), or a server with --tls-cert.
        const hint = !code && !this.#tls ? '; is that its gRPC port, grpc= on its start-up line, not http=? If the server runs with --tls-cert, pass --tls-ca FILE (or FLEETPRUNE_TLS_CA)' : '';
        // A connection error (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH) may pass; a wrong port that answered does not.
        return new UserError(`cannot reach the server at ${this.address} (${code ?? 'unavailable'}${hint})`, code ? { exitCode: UNREACHABLE_EXIT_CODE } : {});
      }
      case GrpcStatus.CANCELLED:
        // The server ended the call before it answered: it shut down or restarted (a kill -9 is a
        // dropped connection instead). The CLI cancels none of its own calls before they end.
        return new UserError(`the server at ${this.address} ended the call before it answered (it shut down or restarted); ${unanswered}`, { exitCode: UNREACHABLE_EXIT_CODE });
      case GrpcStatus.UNAUTHENTICATED:
        return new UserError(`not authenticated: ${error.details}`);
      case GrpcStatus.PERMISSION_DENIED:
        return new UserError(`permission denied: ${error.details}`);
      case GrpcStatus.DEADLINE_EXCEEDED:
        // The server may have finished the work after the client stopped waiting (it refuses only
        // calls whose deadline passed before it started them).
        return new UserError(`the server at ${this.address} did not answer within ${deadlineMs / 1000} s; ${unanswered}`, { exitCode: UNREACHABLE_EXIT_CODE });
      case GrpcStatus.UNIMPLEMENTED:
        // grpc-js's own words for a method the server has no handler for: a server older than this command.
        if (/does not implement the method/i.test(error.details ?? '')) {
          return new UserError(`the server at ${this.address} does not have ${method ?? 'this call'} (a server older than this command): upgrade the server, or use a fleetprune command of its release`);
        }
        return new UserError(error.details || error.message);
      case GrpcStatus.INTERNAL:
      case GrpcStatus.UNKNOWN:
        return new UserError(`server error: ${error.details}`, { exitCode: 1 });
      default:
        return new UserError(error.details || error.message);
    }
  }
}

/**
 * What to check for a certificate that failed verification: an expired or not yet valid one is
 * the server's certificate's dates (or this machine's clock), not the CA or the host name.
 */
export function certificateHint(failure: string): string {
  if (/certificate has expired|CERT_HAS_EXPIRED/i.test(failure)) return "the server's certificate has expired: renew it (--tls-cert), or check this machine's clock";
  if (/certificate is not yet valid|CERT_NOT_YET_VALID/i.test(failure)) return "the server's certificate is not valid yet: check this machine's clock, and the server's";
  return 'check that --tls-ca holds the CA that signed its certificate, and that --server names a host the certificate is for';
}

/**
 * Why a TLS connection's certificate check failed, from grpc-js's UNAVAILABLE details
 * (`No connection established. Last error: Error: self-signed certificate (…)`), else undefined.
 * Only verification failures: OpenSSL's other errors (a plaintext port answering the handshake)
 * are not about a certificate.
 */
function certificateFailure(details: string): string | undefined {
  const last = /Last error: (?:Error(?: \[[A-Z_]+\])?: )?(.*)$/s.exec(details)?.[1]?.trim();
  // OpenSSL's own errors and alerts (`…:SSL routines:…:tlsv13 alert certificate required`) are not verification failures.
  if (!last || /SSL routines|alert/i.test(last) || !/certificate|altnames|ERR_TLS_CERT|UNABLE_TO_VERIFY|CERT_/i.test(last)) return undefined;
  // grpc-js may add a timestamp or a resolver's note after the reason.
  return last.replace(/\.?\s*Resolution note:.*$/s, '').replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)$/, '').split('\n')[0];
}

/** Whether grpc-js's UNAVAILABLE details say the other end answered the TLS handshake with something else (a plaintext port). */
function notTls(details: string): boolean {
  return /wrong version number|packet length too long|unknown protocol|http request/i.test(details);
}

/**
 * Reads the CA bundle a TLS connection trusts: every certificate in it must parse. Checked up
 * front, since grpc-js takes any bytes and only fails to connect ("cannot reach the server").
 */
/** The largest CA file read: bundles of every public CA are about 200 KB. */
const MAX_CA_BYTES = 4 * 1024 * 1024;

function readCaCertificates(path: string, source: string): Buffer {
  let pem: Buffer;
  try {
    // Opened without blocking and checked first: a FIFO nobody writes would hold the command for good, /dev/zero would never end.
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const info = fstatSync(fd);
      if (!info.isFile()) throw new Error(info.isDirectory() ? 'it is a directory' : 'not a regular file');
      if (info.size > MAX_CA_BYTES) throw new Error(`larger than ${MAX_CA_BYTES} bytes`);
      pem = readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new UserError(`${source}: cannot read ${path} (${errorMessage(error)})`);
  }
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new UserError(`${source}: ${path} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new UserError(`${source}: ${path} holds a certificate that does not parse (${errorMessage(error)})`);
    }
  }
  return pem;
}

/**
 * A token travels in a gRPC header, which holds printable ASCII only; grpc-js otherwise throws
 * from Metadata.set, which read as an internal error. Names where the token came from.
 */
function checkToken(token: string, source: string): void {
  const problem = bearerTokenProblem(token);
  if (problem !== null) throw new UserError(`${source}: the token ${problem}`);
}

/**
 * Refuses what grpc-js would only fail to connect to, with a misleading "cannot reach the server"
 * (or not parse at all: an empty address read as an internal error): a URL (the dashboard's
 * http://HOST:PORT, say), an empty or blank address, an empty host or port, a port outside
 * 1-65535, anything after the port.
 */
function checkServerAddress(address: string, source: string): void {
  const expected = "expected the server's gRPC address as host:port (e.g. 127.0.0.1:9090)";
  // Quoted without what looks like credentials (user:password@, with or without a scheme): the line may go to a CI log.
  const shown = address.replace(/^((?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?).*@/s, '$1***@');
  if (/^https?:\/\//i.test(address)) throw new UserError(`${source}: ${expected}, not a URL: ${printable(shown)}`);
  // Credentials have no place in a gRPC address (dns://u:pw@host/... passed, and was quoted whole when unreachable).
  if (!/^unix/.test(address) && address.includes('@')) {
    throw new UserError(`${source}: a gRPC address holds no user:password@ (the token goes in --token or FLEETPRUNE_TOKEN), not ${printable(JSON.stringify(shown))}`);
  }
  // grpc-js's own target forms (unix:/run/fleetprune.sock, dns:///host:port) pass as they are.
  if (/^(dns|unix|ipv4|ipv6):/.test(address)) return;
  // Otherwise host, host:port, [v6], [v6]:port or a bare IPv6 address, with nothing around it.
  const hostPort = /^(\[[^\]\s]+\]|[^:/\s[\]]+)(?::(\d+))?$/.exec(address);
  const port = hostPort?.[2] === undefined ? 1 : Number(hostPort[2]);
  if ((!hostPort && isIP(address) !== 6) || port < 1 || port > 65_535) throw new UserError(`${source}: ${expected}, not ${printable(JSON.stringify(shown))}`);
}

/** The port the server's gRPC API listens on unless told otherwise (its --grpc-port). */
const DEFAULT_GRPC_PORT = 9090;

/**
 * `address` with the server's default gRPC port when it names a host alone (`fleet.example`,
 * `10.0.0.5`, `[::1]` or `::1`): grpc-js would dial port 443, where no fleetprune server listens
 * by default. Other targets grpc-js knows (`unix:/run/fleetprune.sock`, `dns:///host:port`) pass as they are.
 */
function withDefaultPort(address: string): string {
  if (/^[A-Za-z0-9.-]+$/.test(address)) return `${address}:${DEFAULT_GRPC_PORT}`;
  if (/^\[[^\]]+\]$/.test(address)) return `${address}:${DEFAULT_GRPC_PORT}`;
  if (isIP(address) === 6) return `[${address}]:${DEFAULT_GRPC_PORT}`;
  return address;
}

/** The host part of `host:port`, `[v6]:port` or a bare host. */
function hostOf(address: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(address);
  if (bracketed) return bracketed[1]!;
  const colon = address.lastIndexOf(':');
  return colon > 0 && address.indexOf(':') === colon ? address.slice(0, colon) : address;
}

let ipServernameWarningIgnored = false;

/**
 * grpc-js sends the target host as the TLS server name (SNI) even when it is an IP address,
 * and node then prints a DeprecationWarning (DEP0123, two lines on stderr) the user can do
 * nothing about. Over TLS to an IP address the CLI drops that one warning; others still print.
 */
function ignoreIpServernameWarning(): void {
  if (ipServernameWarningIgnored) return;
  ipServernameWarningIgnored = true;
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const [typeOrOptions, code] = rest;
    const warningCode = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: string }).code : code;
    if (warningCode === 'DEP0123') return;
    emitWarning(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** Runs `work` with a connection that is closed afterwards. */
export async function withConnection<T>(flags: ConnectionFlags, work: (connection: ServerConnection) => Promise<T>): Promise<T> {
  const connection = new ServerConnection(flags);
  try {
    return await work(connection);
  } finally {
    connection.close();
  }
}
