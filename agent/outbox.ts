import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, fsyncDirectory } from '../shared/util/atomic-file.ts';
import type { Logger } from '../shared/util/log.ts';
import { z } from 'zod';
import { errorMessage } from '../shared/util/errors.ts';
import { readRegularFile } from '../shared/util/read-regular-file.ts';
import { BROKER_MAX_PACKET_BYTES } from '../shared/protocol/limits.ts';

/**
 * The largest entry file read. Its payload is JSON escaped in JSON (at most 6 bytes of file per
 * byte of payload), so a larger file holds a payload far above MAX_PAYLOAD_BYTES, which no reader
 * takes: it is junk.
 */
const MAX_ENTRY_BYTES = BROKER_MAX_PACKET_BYTES;

const OutboxEntrySchema = z.strictObject({
  topic: z.string().min(1),
  /** The JSON payload text. */
  payload: z.string(),
});
export type OutboxEntry = z.infer<typeof OutboxEntrySchema>;

/** Publishes one entry with QoS 1; resolves on PUBACK. */
export type OutboxPublisher = (topic: string, payload: Buffer) => Promise<void>;

/**
 * Messages that must reach the server (reports), kept on disk until the broker acknowledges
 * them: one file per message, written atomically and deleted only after PUBACK, sent oldest
 * first. They survive broker and network outages and agent restarts; a message may be sent
 * twice around a crash, which is why reports carry ids.
 */
export class Outbox {
  readonly #inFlight = new Set<string>();
  #sequence = 0;
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
    // Leftover temp files of an interrupted write are not messages.
    for (const name of await readdir(this.dir)) if (name.startsWith('.')) await rm(join(this.dir, name), { force: true, recursive: true });
    this.onPendingChange((await this.pending()).length);
  }

  async enqueue(entry: OutboxEntry, id: string): Promise<void> {
    const name = `${Date.now().toString().padStart(15, '0')}-${String(this.#sequence++).padStart(6, '0')}-${id}.json`;
    await writeFileAtomic(join(this.dir, name), JSON.stringify(entry));
    this.onPendingChange((await this.pending()).length);
  }

  async pending(): Promise<string[]> {
    return (await readdir(this.dir)).filter((name) => name.endsWith('.json') && !name.startsWith('.')).sort();
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
        entry = OutboxEntrySchema.parse(JSON.parse(await readRegularFile(path, MAX_ENTRY_BYTES)));
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
      this.#inFlight.add(name);
      try {
        await publish(entry.topic, Buffer.from(entry.payload));
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
