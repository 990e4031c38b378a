/** A FIFO async mutex: `run` calls execute one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(work, work);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/**
 * One FIFO mutex per key, kept only while work for that key is queued or running: a server that
 * locks per rollout for months keeps no entry for each rollout it ever ran.
 */
export class KeyedMutex {
  readonly #locks = new Map<string, { mutex: Mutex; queued: number }>();

  run<T>(key: string, work: () => Promise<T> | T): Promise<T> {
    let entry = this.#locks.get(key);
    if (!entry) this.#locks.set(key, (entry = { mutex: new Mutex(), queued: 0 }));
    entry.queued++;
    const held = entry;
    return held.mutex.run(work).finally(() => {
      if (--held.queued === 0 && this.#locks.get(key) === held) this.#locks.delete(key);
    });
  }

  /** Keys with work queued or running (for tests). */
  get size(): number {
    return this.#locks.size;
  }
}
