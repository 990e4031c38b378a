import type { ServerWritableStream } from '@grpc/grpc-js';
import type { StalledStreams } from '../app/stalled-streams.ts';

/**
 * Writes a server stream's messages with regard to back-pressure, and notices a client that stopped
 * reading (see server/app/stalled-streams.ts).
 *
 * grpc-js queues whatever `call.write` is given, without limit, until the client's HTTP/2 window
 * lets it out; nothing public drops that queue or resets the stream, and the final status goes out
 * only after it. So the call is handed messages only while `call.write` says it wants more (its
 * high-water mark, 16 messages), the rest wait here, where a stalled stream's backlog can be
 * dropped: then `onStalled` runs, once, and the caller ends the call (RESOURCE_EXHAUSTED, delivered
 * after the few messages grpc-js already holds if the client ever reads again).
 */
export class PacedCallWriter<Message extends object> {
  readonly #waiting: { message: Message; bytes: number }[] = [];
  /** Bytes waiting here plus bytes handed to grpc-js and not yet sent: what the client has not taken. */
  #unsentBytes = 0;
  #stopped = false;
  #idle: (() => void)[] = [];
  readonly #guard;

  constructor(
    private readonly call: ServerWritableStream<unknown, Message>,
    policy: StalledStreams,
    onStalled: (unsentBytes: number) => void,
  ) {
    this.#guard = policy.guard(
      () => this.#unsentBytes,
      () => {
        const unsent = this.#unsentBytes;
        this.stop();
        onStalled(unsent);
      },
    );
    call.on('drain', () => this.#flush());
  }

  get unsentBytes(): number {
    return this.#unsentBytes;
  }

  write(message: Message): void {
    if (this.#stopped || this.call.cancelled) return;
    // The protobuf encoding is not public before grpc-js makes it; the JSON form is a close upper bound.
    const bytes = Buffer.byteLength(JSON.stringify(message));
    this.#unsentBytes += bytes;
    this.#waiting.push({ message, bytes });
    this.#flush();
    this.#guard.check();
  }

  /** Resolves once every message is handed to grpc-js (or the writer stopped): the call may end. */
  handedOver(): Promise<void> {
    if (this.#waiting.length === 0 || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Drops what waits here and writes nothing more. */
  stop(): void {
    this.#stopped = true;
    this.#guard.stop();
    this.#waiting.length = 0;
    this.#settleIdle();
  }

  #flush(): void {
    while (!this.#stopped && this.#waiting.length > 0 && !this.call.cancelled && !this.call.writableNeedDrain) {
      const { message, bytes } = this.#waiting.shift()!;
      this.call.write(message, () => {
        this.#unsentBytes -= bytes;
        this.#guard.check();
      });
    }
    if (this.#waiting.length === 0) this.#settleIdle();
  }

  #settleIdle(): void {
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}
