import type { Counter } from 'prom-client';
import type { Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import { stateDrop, type FleetIngest, type IngestOutcome, type StateOutcome } from './fleet-ingest.ts';

export interface StateThrottleOptions {
  /** Where the messages that pass go (the store). */
  inner: FleetIngest;
  /** A device's heartbeats and statuses are written at most once each per this interval (default 1 s). */
  minIntervalMs?: number;
  /**
   * Device messages dropped, by kind and reason: the superseded ones count as `rate-limited`, held
   * ones the store refused when their turn came (a device revoked meanwhile) as `unknown-device`.
   */
  dropped: Counter<'kind' | 'reason'>;
  /** Device messages accepted, by kind: a held one counts when it is stored (the receiver counts those written at once). */
  accepted?: Counter<'kind'>;
  logger: Logger;
  /** A device's heartbeat or status could not be stored (what the store says of it falls behind it). */
  onWriteFailed?: (deviceId: string) => void;
  /** How often (at most) a device's rate limiting is logged (default 60 s). */
  logEveryMs?: number;
}

/**
 * Superseded messages of one device within a log window before it is logged as flooding (warn).
 * An agent replaces a message now and then in normal work (a status change right after a
 * heartbeat, the statuses of a stop): those are counted, logged at debug, and not a warning.
 */
export const STATE_FLOOD_WARN_AFTER = 10;

type StateMessage = { kind: 'telemetry'; payload: Telemetry } | { kind: 'status'; payload: Status };

interface DeviceState {
  /** Held until the interval ends: the latest of each kind, in the order they came. */
  pending: StateMessage[];
  /** This device's writes, one after the other. */
  chain: Promise<void>;
  failures: number;
}

/** Failed writes of held messages are tried again at the next intervals, this many times. */
const MAX_FLUSH_FAILURES = 5;

/**
 * Bounds the store writes a device's heartbeats (telemetry) and statuses cost: the first one
 * after a quiet interval is written at once; those that follow within `minIntervalMs` are held,
 * the newest of each kind replacing the one before (which counts as dropped, `rate-limited`), and
 * written when the interval ends. So a device that floods costs at most two writes (one of each
 * kind) per interval, and its latest state always lands. A device's report first writes what is
 * held for it, so the store sees its messages in the order it sent them.
 *
 * A message written at once answers with the store's outcome; a held one answers 'held', and is
 * counted here when its turn comes: accepted when stored, dropped when superseded (`rate-limited`),
 * refused (`unknown-device`) or lost (`storage-error`). So each message counts once.
 */
export class StateThrottle implements FleetIngest {
  readonly #options: StateThrottleOptions;
  readonly #devices = new Map<string, DeviceState>();
  /** Per device: its log window, the messages superseded in it, and whether it was warned of in it. */
  readonly #windows = new Map<string, { at: number; superseded: number; warned: boolean }>();
  #stopped = false;
  /** Deposed (discard) until elected again (resume): heartbeats and statuses are dropped, not written. */
  #deposed = false;

  constructor(options: StateThrottleOptions) {
    this.#options = options;
  }

  get #intervalMs(): number {
    return this.#options.minIntervalMs ?? 1000;
  }

  async ingestReport(report: Report): Promise<IngestOutcome> {
    const device = this.#devices.get(report.deviceId);
    if (device) await this.#enqueue(device, () => this.#writeHeld(report.deviceId, device));
    return this.#options.inner.ingestReport(report);
  }

  recordTelemetry(telemetry: Telemetry): Promise<StateOutcome> {
    return this.#record(telemetry.deviceId, { kind: 'telemetry', payload: telemetry });
  }

  recordStatus(status: Status): Promise<StateOutcome> {
    return this.#record(status.deviceId, { kind: 'status', payload: status });
  }

  /** Writes everything held (at shutdown, after the broker stopped) and holds nothing from then on. */
  async flush(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#devices].map(([deviceId, device]) => this.#enqueue(device, () => this.#writeHeld(deviceId, device))));
    this.#devices.clear();
  }

  /**
   * Drops everything held, unwritten (counted as dropped, `deposed`): a server deposed as the
   * leader must not write device state after the new leader read it back (its exported totals
   * would miss what the late write counted). Heartbeats are cumulative: the new leader counts
   * those rows from the device's next one.
   */
  discard(): void {
    this.#deposed = true;
    for (const device of this.#devices.values()) {
      for (const held of device.pending.splice(0)) this.#options.dropped.inc({ kind: held.kind, reason: 'deposed' });
    }
  }

  /** Elected again: heartbeats and statuses are written as before. */
  resume(): void {
    this.#deposed = false;
  }

  #record(deviceId: string, message: StateMessage): Promise<StateOutcome> {
    // Still coming in while the broker connection winds down after a deposition: not written either.
    if (this.#deposed) {
      this.#options.dropped.inc({ kind: message.kind, reason: 'deposed' });
      return Promise.resolve('held');
    }
    const device = this.#devices.get(deviceId);
    if (!device) {
      // Nothing written for it in the last interval: written now, and what follows is held.
      const fresh: DeviceState = { pending: [], chain: Promise.resolve(), failures: 0 };
      const write = this.#write(message);
      fresh.chain = write.then(() => {}, () => {}); // the receiver retries this one (its retry is then held)
      if (!this.#stopped) {
        this.#devices.set(deviceId, fresh);
        this.#arm(deviceId, fresh);
      }
      return write;
    }
    const superseded = device.pending.findIndex((held) => held.kind === message.kind);
    if (superseded >= 0) {
      device.pending.splice(superseded, 1);
      this.#dropped(deviceId, message.kind);
    }
    device.pending.push(message);
    return Promise.resolve('held');
  }

  #arm(deviceId: string, device: DeviceState): void {
    setTimeout(() => void this.#enqueue(device, () => this.#tick(deviceId, device)), this.#intervalMs).unref();
  }

  /** The interval ended: write what is held and start another, or forget a device that went quiet. */
  async #tick(deviceId: string, device: DeviceState): Promise<void> {
    if (this.#devices.get(deviceId) !== device) return;
    if (device.pending.length === 0) {
      this.#devices.delete(deviceId);
      return;
    }
    await this.#writeHeld(deviceId, device);
    this.#arm(deviceId, device);
  }

  #enqueue(device: DeviceState, work: () => Promise<void>): Promise<void> {
    const next = device.chain.then(work);
    device.chain = next.catch((error: unknown) => this.#options.logger.error({ err: error }, 'writing a device\'s held state failed'));
    return device.chain;
  }

  async #writeHeld(deviceId: string, device: DeviceState): Promise<void> {
    const held = device.pending.splice(0);
    for (const [i, message] of held.entries()) {
      try {
        const outcome = await this.#write(message);
        device.failures = 0;
        this.#written(deviceId, message.kind, outcome);
      } catch (error) {
        // One that a newer message of its kind (come in during this write) replaced is superseded,
        // as if it had been replaced while held: counted here, or it would count nowhere.
        const replaced = (left: StateMessage) => device.pending.some((newer) => newer.kind === left.kind);
        for (const superseded of held.slice(i).filter(replaced)) this.#dropped(deviceId, superseded.kind);
        const unwritten = held.slice(i).filter((left) => !replaced(left));
        if (++device.failures <= MAX_FLUSH_FAILURES && !this.#stopped) {
          // Tried again at the next interval, unless something newer replaced it meanwhile.
          device.pending.unshift(...unwritten);
          this.#options.logger.warn({ err: errorMessage(error), deviceId, attempt: device.failures }, 'storing a device\'s heartbeat or status failed; trying again');
        } else {
          device.failures = 0;
          for (const lost of unwritten) this.#options.dropped.inc({ kind: lost.kind, reason: 'storage-error' });
          this.#options.logger.error({ err: error, deviceId }, 'cannot store a device\'s heartbeat or status');
        }
        return;
      }
    }
  }

  /** Counts a held message the store answered. */
  #written(deviceId: string, kind: StateMessage['kind'], outcome: StateOutcome): void {
    const drop = stateDrop(outcome);
    if (drop) {
      this.#options.dropped.inc({ kind, reason: drop.reason });
      this.#options.logger.warn({ deviceId, kind, reason: drop.reason }, drop.message);
    } else {
      this.#options.accepted?.inc({ kind });
    }
  }

  async #write(message: StateMessage): Promise<StateOutcome> {
    try {
      return await (message.kind === 'telemetry' ? this.#options.inner.recordTelemetry(message.payload) : this.#options.inner.recordStatus(message.payload));
    } catch (error) {
      this.#options.onWriteFailed?.(message.payload.deviceId);
      throw error;
    }
  }

  /**
   * Counted each time. Logged at debug; a device that superseded STATE_FLOOD_WARN_AFTER messages
   * within one logEveryMs window is logged once in that window at warn, with the count so far.
   */
  #dropped(deviceId: string, kind: StateMessage['kind']): void {
    this.#options.dropped.inc({ kind, reason: 'rate-limited' });
    const now = Date.now();
    const every = this.#options.logEveryMs ?? 60_000;
    let window = this.#windows.get(deviceId);
    if (!window || now - window.at >= every) {
      if (this.#windows.size >= 10_000) for (const [id, entry] of this.#windows) if (now - entry.at >= every) this.#windows.delete(id);
      window = { at: now, superseded: 0, warned: false };
      this.#windows.set(deviceId, window);
    }
    window.superseded++;
    const fields = { deviceId, kind, minIntervalMs: this.#intervalMs, supersededInWindow: window.superseded, windowMs: every };
    if (window.superseded >= STATE_FLOOD_WARN_AFTER && !window.warned) {
      window.warned = true;
      this.#options.logger.warn(fields, `device sends heartbeats or statuses faster than one per ${this.#intervalMs} ms; only its latest is stored`);
    } else {
      this.#options.logger.debug(fields, 'a newer heartbeat or status replaced one held for the device');
    }
  }
}
