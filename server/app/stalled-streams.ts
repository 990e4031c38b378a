import type { Logger } from '../../shared/util/log.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';

/**
 * When an event stream (gRPC WatchRollout/WatchJob, REST server-sent events) counts as stalled:
 * its unsent data stays over `budgetBytes` for `graceMs` without once falling back under it (as seen
 * at each write and each drain, and at the end of the grace period).
 */
export interface StalledStreamLimits {
  budgetBytes: number;
  graceMs: number;
}

/**
 * The numbers, from a measurement (an in-process server, loopback, a watcher that stops reading
 * while 40 MiB of 16 KiB events are sent): before this policy the server's heap grew by every byte
 * sent (gRPC: +40.5 MiB, never freed while the client answered keepalive pings; SSE: +32.8 MiB
 * until --idle-timeout closed the socket, and a client reading a byte now and then defeats that).
 * A reading client keeps its unsent data near zero; the kernel and the HTTP/2 window take the
 * first ~3 MiB (SSE) or 64 KiB (gRPC) before the server holds anything.
 *
 * - budgetBytes 4 MiB: a watch starts by writing the rollout's whole decision history at once; a
 *   decision is ~0.4 KiB (3000 decisions with measurement messages: 1.1 MB as JSON, less as protobuf),
 *   so 4 MiB is ~10 000 decisions, far more than a rollout has. A longer history is still fine for a client that reads: it only has to bring the backlog
 *   under 4 MiB within the grace period (a 40 MiB backlog at ~1 MiB/s).
 * - graceMs 30 s: longer than any pause a reading client makes (a GC, a busy terminal, a laptop
 *   waking up), shorter than the 60 s default --idle-timeout, so a client that reads a byte now and
 *   then (which keeps --idle-timeout from firing) is still ended within half a minute. What one
 *   stalled stream can hold is the budget plus the events of 30 s: bounded.
 */
export const DEFAULT_STALLED_STREAM_LIMITS: StalledStreamLimits = { budgetBytes: 4 * 1024 * 1024, graceMs: 30_000 };

/** One stream ended as stalled: where it came from, for the warn line and the counter. */
export interface StalledStream {
  api: 'grpc' | 'sse';
  /** The gRPC method (Rollouts/WatchRollout) or the REST route (GET /api/rollouts/:id/events). */
  stream: string;
  /** The request's target (e.g. /api/jobs/job-1/events), when it says more than `stream`. */
  target?: string;
  peer: string;
  unsentBytes: number;
}

/** The policy for every event stream of one server: its limits, and how an ended stream is reported. */
export class StalledStreams {
  readonly limits: StalledStreamLimits;

  constructor(
    private readonly deps: { metrics: ServerMetrics; log: Logger },
    limits: Partial<StalledStreamLimits> = {},
  ) {
    this.limits = { ...DEFAULT_STALLED_STREAM_LIMITS, ...limits };
  }

  /** Watches one stream; `onStalled` ends it. */
  guard(unsentBytes: () => number, onStalled: () => void): StalledStreamGuard {
    return new StalledStreamGuard(this.limits, unsentBytes, onStalled);
  }

  /** One warn line and one count per stream ended. */
  ended(stream: StalledStream): void {
    this.deps.metrics.stalledStreamsEnded.inc({ api: stream.api, stream: stream.stream });
    this.deps.log.warn(
      { api: stream.api, stream: stream.stream, ...(stream.target ? { target: stream.target } : {}), peer: stream.peer, unsentBytes: stream.unsentBytes, ...this.limits },
      'ended an event stream whose client stopped reading',
    );
  }
}

/**
 * The timer of one stream: `check()` after every write and every drain. Over the budget starts the
 * grace period (once); back under it cancels it; a grace period that ends still over it calls
 * `onStalled` (once).
 */
export class StalledStreamGuard {
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    private readonly limits: StalledStreamLimits,
    private readonly unsentBytes: () => number,
    private readonly onStalled: () => void,
  ) {}

  check(): void {
    if (this.#stopped) return;
    if (this.unsentBytes() <= this.limits.budgetBytes) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped || this.unsentBytes() <= this.limits.budgetBytes) return;
      this.stop();
      this.onStalled();
    }, this.limits.graceMs).unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
