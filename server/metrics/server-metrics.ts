import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../../shared/metrics/process-metrics.ts';
import { METRIC_PREFIX, SERVER_METRICS } from '../../shared/metrics/names.ts';
import type { Logger } from '../../shared/util/log.ts';
import { StoreReads } from './store-reads.ts';

export interface ServerMetricsOptions {
  /** The store behind storeGauge(): probed at each scrape, and exported as fleetprune_store_up. */
  store?: { probe: () => Promise<unknown>; log?: Logger; timeoutMs?: number };
}

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * One prom-client Registry per server instance (never the global one), so several servers can
 * run in one process. Modules add their own metrics to `registry`.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'code'>;
  readonly grpcDuration: Histogram<'method' | 'code'>;
  readonly jobsFinished: Counter<'state'>;
  readonly blobBytesServed: Counter<'transport'>;
  readonly blobsDamaged: Counter;
  readonly blobGcFreedBytes: Counter;
  readonly stalledStreamsEnded: Counter<'api' | 'stream'>;
  readonly #storeReads: StoreReads;

  constructor(options: ServerMetricsOptions = {}) {
    registerProcessMetrics(this.registry, METRIC_PREFIX);
    this.httpDuration = new Histogram({
      name: SERVER_METRICS.httpRequestDuration,
      help: 'HTTP request duration by method, express route pattern and status code (499: the client closed the connection before the answer ended, an event stream or a download given up)',
      labelNames: ['method', 'route', 'code'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    this.grpcDuration = new Histogram({
      name: SERVER_METRICS.grpcRequestDuration,
      help: 'gRPC call duration by method (Service/Method, as Rollouts/StartRollout; the package fleetprune.v1 left out) and status code',
      labelNames: ['method', 'code'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    this.jobsFinished = new Counter({
      name: SERVER_METRICS.jobsFinished,
      help: 'Background jobs that finished, by final state: succeeded, failed, or cancelled (a cancel took effect)',
      labelNames: ['state'],
      registers: [this.registry],
    });
    // Each state exported at 0 from the start: a series that first appears at 1 is no increase to
    // Prometheus, and an alert on the first failed job after a start would not fire.
    for (const state of ['succeeded', 'failed', 'cancelled']) this.jobsFinished.inc({ state }, 0);
    this.blobBytesServed = new Counter({
      name: SERVER_METRICS.blobBytesServed,
      help: 'Blob body bytes sent to clients, by transport (none for HEAD, 304 or 416; of a download the client aborted, those sent before it)',
      labelNames: ['transport'],
      registers: [this.registry],
    });
    this.blobsDamaged = new Counter({
      name: SERVER_METRICS.blobsDamaged,
      help: "Stored blob copies a download or a blobs check found damaged on the server's disk (their bytes hash to something else) and set aside under blobs/damaged, each counted once; push the artifact again to restore them",
      registers: [this.registry],
    });
    this.blobGcFreedBytes = new Counter({
      name: SERVER_METRICS.blobGcFreedBytes,
      help: 'Bytes of unreferenced blobs removed by garbage collection',
      registers: [this.registry],
    });
    this.stalledStreamsEnded = new Counter({
      name: SERVER_METRICS.stalledStreamsEnded,
      help: 'Event streams the server ended because their client stopped reading (see server/app/stalled-streams.ts), by API (grpc, sse) and stream (method or route)',
      labelNames: ['api', 'stream'],
      registers: [this.registry],
    });
    this.#storeReads = new StoreReads({ probe: options.store?.probe ?? (async () => {}), ...options.store });
    if (options.store) {
      this.gauge(SERVER_METRICS.storeUp, 'Whether the store (the database) answers now: 0 while it does not, when the store\'s gauges keep their last values and fleet changes fail', async () => ((await this.#storeReads.up()) ? 1 : 0));
    }
  }

  /** A gauge whose value is read when /metrics is scraped. */
  gauge(name: string, help: string, read: () => Promise<number> | number): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read());
      },
    });
  }

  /** Whether the store answers now (the probe behind fleetprune_store_up, shared with it). */
  storeUp(): Promise<boolean> {
    return this.#storeReads.up();
  }

  /**
   * A gauge read from the store when /metrics is scraped. It never fails the scrape: a store that
   * does not answer (in time) leaves the last value, or no sample before the first one.
   */
  storeGauge(name: string, help: string, read: () => Promise<number>): Gauge {
    const reads = this.#storeReads;
    return new StoreGauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        const value = await reads.read(name, read);
        if (value === undefined) return;
        this.set(value);
        (this as StoreGauge).hasValue = true;
      },
    });
  }
}

/** Exports no sample until its first value: a gauge's initial 0 would claim, say, an empty fleet. */
class StoreGauge extends Gauge {
  hasValue = false;

  override async get(): ReturnType<Gauge['get']> {
    const metric = await super.get();
    return this.hasValue ? metric : { ...metric, values: [] };
  }
}
