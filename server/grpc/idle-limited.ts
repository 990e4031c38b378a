/**
 * The messages of a client stream, failing with `timedOut()` when the client sends none for
 * `idleMs`: a stalled upload ends, as REST's idle timeout closes an HTTP upload that stops sending.
 * The stream's iterator is returned (ended) whenever the caller stops, so nothing keeps reading it.
 */
export async function* idleLimited<T>(stream: AsyncIterable<T>, idleMs: number, timedOut: () => Error): AsyncGenerator<T> {
  const iterator = stream[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(timedOut()), idleMs);
      });
      let next: IteratorResult<T>;
      try {
        next = await Promise.race([iterator.next(), idle]);
      } finally {
        // Cleared before the message is handed on: the time its consumer takes is not the client's.
        clearTimeout(timer);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Not awaited: a stream's return() waits for the read still pending (the one the timeout cut short).
    void iterator.return?.()?.catch(() => {});
  }
}
