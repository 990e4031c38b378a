/**
 * Who to tell when a token is revoked: open event streams and gRPC watches are authorized once,
 * when they start, so a revocation has to reach them to stop them at once.
 */
export class TokenRevocations {
  readonly #listeners = new Map<string, Set<() => void>>();

  /** Calls `listener` when token `tokenId` is revoked; returns the function that stops watching. */
  watch(tokenId: string, listener: () => void): () => void {
    let listeners = this.#listeners.get(tokenId);
    if (!listeners) this.#listeners.set(tokenId, (listeners = new Set()));
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(tokenId) === listeners) this.#listeners.delete(tokenId);
    };
  }

  /** Token `tokenId` was revoked (committed): everything watching it stops. */
  revoked(tokenId: string): void {
    const listeners = this.#listeners.get(tokenId);
    this.#listeners.delete(tokenId);
    for (const listener of listeners ?? []) listener();
  }

  /** How many requests or streams watch tokens now; for tests and diagnostics. */
  get watching(): number {
    let count = 0;
    for (const listeners of this.#listeners.values()) count += listeners.size;
    return count;
  }
}
