import { setBounded } from './bounded-map.ts';
import type { Logger } from './log.ts';

/** How often one device's dropped messages are logged at most (every drop is counted in the metric). */
export const DROPPED_LOG_EVERY_MS = 60_000;
/** Devices whose windows are kept, most recently dropping first: a fleet of 20,000 misbehaving devices fits. */
const MAX_DEVICES = 100_000;

interface Window {
  since: number;
  /** Dropped since the window's line, not logged yet. */
  unlogged: number;
}

/** How an agent's follow-up lines name its keys (topic kind and reason). */
export const AGENT_DROP_WORDS = { same: 'like it', per: 'per kind of message and reason' };

/**
 * The warn line for messages the receiver drops (malformed, oversized, replayed from the retained
 * store), kept to one per device per minute: the first drop is logged at once with its details,
 * and the next line, a minute on at the earliest, says how many more there were (the last one's
 * details with it). A device sending nothing but bad messages cannot fill the server's log.
 */
export class DroppedMessageLog {
  readonly #windows = new Map<string, Window>();

  constructor(
    private readonly logger: Logger,
    /**
     * `words`: what the key is, for the follow-up line ("from this device", "per device", the
     * server's keys; an agent keys its drops by topic and reason).
     */
    private readonly options: { everyMs?: number; now?: () => number; words?: { same: string; per: string } } = {},
  ) {}

  /** Logs (or counts for the next line) one dropped message of `device`. */
  dropped(device: string, fields: Record<string, unknown>, message: string): void {
    const now = (this.options.now ?? Date.now)();
    const every = this.options.everyMs ?? DROPPED_LOG_EVERY_MS;
    const window = this.#windows.get(device);
    if (window && now - window.since < every) {
      window.unlogged += 1;
      setBounded(this.#windows, device, window, MAX_DEVICES); // the most recent: the last evicted
      return;
    }
    const more = window?.unlogged ?? 0;
    setBounded(this.#windows, device, { since: now, unlogged: 0 }, MAX_DEVICES);
    const { same, per } = this.options.words ?? { same: 'from this device', per: 'per device' };
    this.logger.warn({ ...fields, ...(more > 0 ? { droppedSinceLastLine: more } : {}) }, more > 0 ? `${message} (and ${more} more ${same} since the last such line; at most one line a minute ${per})` : message);
  }
}
