import type { Logger } from '../../shared/util/log.ts';
import { setBounded } from '../../shared/util/bounded-map.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { DevicesRepository } from '../store/repositories/devices-repository.ts';

/** A device is marked offline once the server has not heard from it for this many of its heartbeat intervals... */
export const SILENT_HEARTBEATS = 3;
/** ...and never sooner than this after it was last heard (a short interval, a broker slow to pass heartbeats on). */
export const SILENT_MIN_MS = 60_000;
/** How often the online devices are checked. */
export const SILENT_SWEEP_MS = 15_000;
/** Devices whose failed writes are remembered at most (the oldest are forgotten first). */
const UNHEARD_DEVICES = 100_000;

/** How long the server waits to hear from a device that heartbeats every `intervalSeconds` before it marks it offline. */
export function silentAfterMs(intervalSeconds: number, minMs = SILENT_MIN_MS): number {
  return Math.max(minMs, SILENT_HEARTBEATS * intervalSeconds * 1000);
}

export interface SilentDeviceSweepOptions {
  devices: Pick<DevicesRepository, 'onlineWithInterval' | 'markSilent'>;
  log: Logger;
  /**
   * Whether this server hears the devices now: it speaks for them (not a standby) and its broker
   * connection is up. Silence counts only from when it last started to hear them.
   */
  listening: () => boolean;
  /** The wall clock (ms): silence is measured against `lastSeen`, which is wall-clock time. */
  now?: () => number;
  /** A clock that never steps (ms), to tell a stall or a stepped wall clock from time passing. */
  monotonic?: () => number;
  everyMs?: number;
  minMs?: number;
  /**
   * A device was marked offline. Its retained `online` must go from the broker (cleared), or the
   * broker would hand it to the server again at its next subscription and show the device online
   * once more, for another three intervals each time.
   */
  onMarked?: (deviceId: string) => Promise<void>;
}

/**
 * Marks offline the devices shown online that have gone silent. A device's online state follows
 * its retained status and last will, but a device that dies while an external broker is down
 * leaves no will: the broker comes back with its retained `online: true`, and without this the
 * device would show online for ever. A heartbeat or status that arrives later brings it back.
 * Only devices that announce their heartbeat interval are judged (agents that predate it are not).
 */
export class SilentDeviceSweep {
  readonly #o: SilentDeviceSweepOptions;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Since when (ms) this server has heard the devices without a break, as the rounds saw it. */
  #listeningSince: number | undefined;
  /** When the last round ended, by the wall clock and a monotonic one (ms). */
  #lastRound: { wall: number; mono: number } | undefined;
  /** Devices whose heartbeat or status could not be stored, and when (ms): their silence counts from then. */
  readonly #unheardSince = new Map<string, number>();

  constructor(options: SilentDeviceSweepOptions) {
    this.#o = options;
  }

  start(): void {
    this.#stopped = false;
    this.#listeningSince = undefined;
    this.#lastRound = undefined;
    this.#schedule();
  }

  /**
   * What the devices sent may not have been heard until now (the broker connection came back, the
   * server took the broker side over): silence counts from now. Called between rounds, so that a
   * break shorter than a round is not missed. With `deviceId`, for that device only (a heartbeat
   * or status of it could not be stored): one device whose writes keep failing does not hold the
   * whole fleet's silence back.
   */
  heardNothingUntilNow(deviceId?: string): void {
    if (deviceId === undefined) this.#listeningSince = this.#now();
    else setBounded(this.#unheardSince, deviceId, this.#now(), UNHEARD_DEVICES);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /**
   * One round: the ids of the devices it marked offline. Silence counts from when the device was
   * last heard, or from when this server started to hear devices (its start, a takeover, its
   * broker connection back), whichever is later: what was not heard while nobody listened says nothing.
   */
  async sweep(): Promise<string[]> {
    const now = this.#now();
    const marked: string[] = [];
    // Only those silent for the least wait at all are read (the whole fleet is online most of the time).
    const floor = Math.max(this.#o.minMs ?? SILENT_MIN_MS, 0);
    if (this.#listeningSince !== undefined && now - this.#listeningSince <= floor) return marked;
    for (const device of await this.#o.devices.onlineWithInterval(new Date(now - floor).toISOString())) {
      const silentMs = now - Math.max(Date.parse(device.lastSeen), this.#listeningSince ?? -Infinity, this.#unheardSince.get(device.id) ?? -Infinity);
      if (!(silentMs > silentAfterMs(device.intervalSeconds, this.#o.minMs))) continue;
      // Deposed, or the broker gone, during the round: a standby judges nothing, and a clear could not go out.
      if (!this.#o.listening()) break;
      if (!(await this.#o.devices.markSilent(device.id, device.lastSeen))) continue; // heard from meanwhile
      this.#unheardSince.delete(device.id);
      marked.push(device.id);
      await this.#o.onMarked?.(device.id).catch((error: unknown) => this.#o.log.warn({ err: errorMessage(error), deviceId: device.id }, 'could not clear the retained status of a device marked offline; it may show online again at the next subscription'));
      const sinceSeen = Math.round((now - Date.parse(device.lastSeen)) / 1000);
      // Silence counted from a later start of listening (a reconnect, a restart) is said as such.
      const listened = Math.round(silentMs / 1000) < sinceSeen ? `; this server has been hearing the devices for ${Math.round(silentMs / 1000)} s of it` : '';
      this.#o.log.warn(
        { deviceId: device.id, lastSeen: device.lastSeen, intervalSeconds: device.intervalSeconds },
        `device ${device.id} marked offline: last heard ${sinceSeen} s ago, at ${device.lastSeen} (it heartbeats every ${device.intervalSeconds} s)${listened}`,
      );
    }
    return marked;
  }

  /**
   * One scheduled round: judges the devices while this server hears them, and starts the silence
   * afresh after anything that may have kept it from hearing them (not listening, a failed round,
   * a stall of the server, its clock stepped). Never rejects. Its marked devices' ids.
   */
  async round(): Promise<string[]> {
    const now = this.#now();
    const mono = this.#monotonic();
    const everyMs = this.#o.everyMs ?? SILENT_SWEEP_MS;
    const last = this.#lastRound;
    if (last) {
      // Since the previous round ended (a slow round, clears waiting on a broker, is no stall).
      const elapsed = mono - last.mono;
      // The server stalled (its event loop blocked) or its wall clock stepped (an NTP correction,
      // a machine resumed from suspend): what the devices sent meanwhile may not have been read.
      if (elapsed > 3 * everyMs || Math.abs(now - last.wall - elapsed) > everyMs) this.#listeningSince = now;
    }
    try {
      if (!this.#o.listening()) {
        this.#listeningSince = undefined;
        return [];
      }
      this.#listeningSince ??= now;
      return await this.sweep();
    } catch (error) {
      // A store that failed a round may have failed heartbeats too.
      this.#listeningSince = undefined;
      if (!this.#stopped) this.#o.log.warn({ err: errorMessage(error) }, 'checking for silent devices failed; tried again at the next round');
      return [];
    } finally {
      this.#lastRound = { wall: this.#now(), mono: this.#monotonic() };
    }
  }

  #monotonic(): number {
    return this.#o.monotonic?.() ?? performance.now();
  }

  #now(): number {
    return this.#o.now?.() ?? Date.now();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      await this.round();
      this.#schedule();
    }, this.#o.everyMs ?? SILENT_SWEEP_MS);
    this.#timer.unref();
  }
}
