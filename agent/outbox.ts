import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, fsyncDirectory } from '../shared/util/atomic-file.ts';
import type { Logger } from '../shared/util/log.ts';
import { z } from 'zod';
import { describeZodError, errorMessage } from '../shared/util/errors.ts';
import { readRegularFile } from '../shared/util/read-regular-file.ts';
import { removeLeftover } from './data-dir.ts';
import { describeFileError } from './file-errors.ts';
import { BROKER_MAX_PACKET_BYTES, MAX_PAYLOAD_BYTES } from '../shared/protocol/limits.ts';

/**
 * The largest entry file read. Its payload is JSON escaped in JSON (at most 6 bytes of file per
 * byte of payload), so a larger file holds a payload far above MAX_PAYLOAD_BYTES, which no reader
 * takes: it is junk.
 */
const MAX_ENTRY_BYTES = BROKER_MAX_PACKET_BYTES;

/** Why a payload is never to be sent (over MAX_PAYLOAD_BYTES, or not JSON), or undefined. */
function unsendablePayload(payload: Buffer): string | undefined {
  if (payload.length > MAX_PAYLOAD_BYTES) return `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`;
  try {
    JSON.parse(payload.toString('utf8'));
    return undefined;
  } catch (error) {
    return `payload is not JSON (${errorMessage(error)})`;
  }
}

const OutboxEntrySchema = z.strictObject({
  topic: z.string().min(1),
  /** The JSON payload text. */
  payload: z.string(),
});
export type OutboxEntry = z.infer<typeof OutboxEntrySchema>;

/**
 * An entry's file name starts with its number, `<number>-`: its place in the sending order. New
 * entries are numbered from the highest number on disk at start, plus one, never from the clock,
 * so a wall clock stepped back (NTP) cannot reorder them. Entries written by older agents are
 * named `<Date.now(), 15 digits>-<6 digits>-<id>.json`: their leading number is that time, so they
 * keep their old order, and every entry written since sorts after them.
 */
const ENTRY_NUMBER = /^(\d+)-/;

/**
 * The largest number numbered from (15 digits). Entries are padded to 15 digits, and counting on
 * from an old entry's time (13 digits), one per report, never comes near it. A file numbered above
 * it is a stray: sent or removed in its turn, but never numbered from, so new entries always get
 * strictly increasing numbers, far within the 17 digits the next start reads (AGENT_ENTRY_NAME).
 */
const MAX_NUMBERED_FROM = 10n ** 15n - 1n;

/**
 * The names the agent writes, `<number>-<report id>.json` and the older `<ms>-<seq>-<report id>.json`,
 * with a number of at most 17 digits: only those, numbered at most MAX_NUMBERED_FROM, move the
 * numbering on. A stray file named with a larger number (or any other name) would make later
 * entries' names ones the next start does not read, or too long for the file system, so it is sent
 * or removed in its turn but never numbered from.
 */
const AGENT_ENTRY_NAME = /^(\d{1,17})-(?:\d{6}-)?[A-Za-z0-9_-]{1,64}\.json$/;

/** An entry's number (a string of digits without leading zeros), or undefined for a name without one. */
function entryNumber(name: string): string | undefined {
  const digits = ENTRY_NUMBER.exec(name)?.[1];
  return digits === undefined ? undefined : digits.replace(/^0+(?=\d)/, '');
}

/** Sending order: by number (a name without one first: it is junk, removed at once), then by name. */
function compareEntries(a: string, b: string): number {
  const [x, y] = [entryNumber(a), entryNumber(b)];
  if (x !== y) {
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x.length !== y.length) return x.length - y.length;
    return x < y ? -1 : 1;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Publishes one entry with QoS 1; resolves on PUBACK. */
export type OutboxPublisher = (topic: string, payload: Buffer) => Promise<void>;

/**
 * Messages that must reach the server (reports), kept on disk until the broker acknowledges
 * them: one file per message, written atomically and deleted only after PUBACK, sent oldest
 * first (by the number in its name, see ENTRY_NUMBER). They survive broker and network outages
 * and agent restarts; a message may be sent twice around a crash, which is why reports carry ids.
 */
export class Outbox {
  readonly #inFlight = new Set<string>();
  /** The next entry's number: above every entry on disk at start (but strays, see MAX_NUMBERED_FROM), then one more per entry. */
  #next = 0n;
  #flushing: Promise<void> | undefined;
  #again = false;

  readonly onPendingChange: (pending: number) => void;
  readonly #allowedTopic: (topic: string) => boolean;

  /**
   * `allowedTopic`: whether an entry's topic is one this device publishes its reports on. An entry
   * with any other topic (a wildcard, another device's topic) is not sent: the broker may refuse it
   * or drop the connection, and it would stay first and hold back every later report.
   */
  constructor(
    readonly dir: string,
    readonly logger: Logger,
    options: { allowedTopic: (topic: string) => boolean; onPendingChange?: (pending: number) => void },
  ) {
    this.#allowedTopic = options.allowedTopic;
    this.onPendingChange = options.onPendingChange ?? (() => {});
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    // Leftover temp files of an interrupted write are not messages. Best effort: one the disk does
    // not let go of (read-only) is logged and left; it is never sent (pending() skips it).
    for (const name of await readdir(this.dir)) {
      if (name.startsWith('.')) await removeLeftover(join(this.dir, name), (path, error) => this.logger.warn({ file: path, err: describeFileError(path, error) }, 'cannot remove a leftover temp file of the outbox; left in place'));
    }
    const pending = await this.pending();
    for (const name of pending) {
      const digits = AGENT_ENTRY_NAME.exec(name)?.[1];
      if (digits !== undefined && BigInt(digits) >= this.#next && BigInt(digits) <= MAX_NUMBERED_FROM) this.#next = BigInt(digits) + 1n;
    }
    this.onPendingChange(pending.length);
  }

  async enqueue(entry: OutboxEntry, id: string): Promise<void> {
    const name = `${this.#next.toString().padStart(15, '0')}-${id}.json`;
    this.#next++;
    await writeFileAtomic(join(this.dir, name), JSON.stringify(entry));
    this.onPendingChange((await this.pending()).length);
  }

  async pending(): Promise<string[]> {
    return (await readdir(this.dir)).filter((name) => name.endsWith('.json') && !name.startsWith('.')).sort(compareEntries);
  }

  /** Sends everything pending, in order; stops at the first failure (the broker is away). */
  flush(publish: OutboxPublisher): Promise<void> {
    if (this.#flushing) {
      this.#again = true;
      return this.#flushing;
    }
    this.#flushing = (async () => {
      do {
        this.#again = false;
        await this.#flushOnce(publish);
      } while (this.#again);
    })().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async #flushOnce(publish: OutboxPublisher): Promise<void> {
    for (const name of await this.pending()) {
      if (this.#inFlight.has(name)) continue;
      const path = join(this.dir, name);
      let entry: OutboxEntry;
      try {
        // Never a blocking read: a FIFO or a device is refused unread, like a directory.
        const parsed = OutboxEntrySchema.safeParse(JSON.parse(await readRegularFile(path, MAX_ENTRY_BYTES)));
        if (!parsed.success) throw new Error(`not an outbox entry (${describeZodError(parsed.error, '', 'entry')})`);
        entry = parsed.data;
      } catch (error) {
        // Not JSON, not an entry, or not a file: removed, or it would block every later report.
        this.logger.error({ err: errorMessage(error), file: path }, 'unreadable outbox entry removed');
        await this.#discard(path);
        continue;
      }
      if (!this.#allowedTopic(entry.topic)) {
        // Not this device's report topic: never sent, and removed, or it would block every later report.
        this.logger.error({ topic: entry.topic, file: path }, 'outbox entry for a topic this device does not publish removed');
        await this.#discard(path);
        continue;
      }
      const payload = Buffer.from(entry.payload);
      const unsendable = unsendablePayload(payload);
      if (unsendable !== undefined) {
        // The broker closes a device's connection on a packet over its limit: kept, the entry was
        // sent again at every reconnect, for good, and every report behind it waited.
        this.logger.error({ file: path, reason: unsendable }, 'outbox entry no broker or server accepts removed');
        await this.#discard(path);
        continue;
      }
      this.#inFlight.add(name);
      try {
        await publish(entry.topic, payload);
      } catch (error) {
        this.logger.debug({ err: (error as Error).message }, 'outbox flush paused');
        return;
      } finally {
        this.#inFlight.delete(name);
      }
      await rm(path, { force: true });
      await fsyncDirectory(this.dir);
      this.onPendingChange((await this.pending()).length);
    }
  }

  /** Removes an entry that is never to be sent; the pending count says so at once, not at the next send. */
  async #discard(path: string): Promise<void> {
    await rm(path, { force: true, recursive: true });
    this.onPendingChange((await this.pending()).length);
  }
}
