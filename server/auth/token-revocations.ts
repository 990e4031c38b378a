/** How often the tokens of open streams are looked up, for revocations made by another server. */
export const REVOCATION_POLL_MS = 5000;

/** A watched token that no longer works, and why, in words for the caller ("the token was revoked"). */
export interface EndedToken {
  id: string;
  why: string;
}

export const REVOKED = 'the token was revoked';

/** Why a token no longer works, in words for the caller: revoked, else expired (and when). */
export const whyEnded = (token: { id: string; revokedAt: string | null; expiresAt: string | null }): string =>
  token.revokedAt !== null ? REVOKED : `token ${token.id} expired at ${token.expiresAt}`;

export interface TokenRevocationsOptions {
  /**
   * The ids among `ids` whose tokens the store holds as no longer working: revoked, or expired.
   * Another server sharing the database revokes there, and its `revoked()` call never reaches
   * this process: streams open here would go on under a revoked token; and nothing calls
   * `revoked()` when a token expires. Without it, only this process's revocations stop streams.
   */
  endedAmong?: (ids: readonly string[]) => Promise<EndedToken[]>;
  pollMs?: number;
}

/**
 * Who to tell when a token is revoked: open event streams and gRPC watches are authorized once,
 * when they start, so a revocation has to reach them to stop them at once (on this server), or
 * within REVOCATION_POLL_MS (on another server sharing the database, or when the token expires).
 */
export class TokenRevocations {
  readonly #listeners = new Map<string, Set<(why: string) => void>>();
  readonly #options: TokenRevocationsOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: TokenRevocationsOptions = {}) {
    this.#options = options;
  }

  /** Calls `listener`, saying why, when token `tokenId` stops working; returns the function that stops watching. */
  watch(tokenId: string, listener: (why: string) => void): () => void {
    let listeners = this.#listeners.get(tokenId);
    if (!listeners) this.#listeners.set(tokenId, (listeners = new Set()));
    listeners.add(listener);
    this.#schedulePoll();
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(tokenId) === listeners) this.#listeners.delete(tokenId);
    };
  }

  /** Token `tokenId` was revoked (committed), or has expired (`why` says so): everything watching it stops. */
  revoked(tokenId: string, why = REVOKED): void {
    const listeners = this.#listeners.get(tokenId);
    this.#listeners.delete(tokenId);
    for (const listener of listeners ?? []) listener(why);
  }

  /** How many requests or streams watch tokens now; for tests and diagnostics. */
  get watching(): number {
    let count = 0;
    for (const listeners of this.#listeners.values()) count += listeners.size;
    return count;
  }

  /** One lookup per interval for all the watched tokens, and only while some are watched. */
  #schedulePoll(): void {
    if (this.#timer || !this.#options.endedAmong || this.#listeners.size === 0) return;
    this.#timer = setTimeout(() => void this.#poll(), this.#options.pollMs ?? REVOCATION_POLL_MS);
    this.#timer.unref();
  }

  async #poll(): Promise<void> {
    const ids = [...this.#listeners.keys()];
    try {
      if (ids.length > 0) for (const { id, why } of await this.#options.endedAmong!(ids)) this.revoked(id, why);
    } catch {
      // The store did not answer this time: the next poll asks again.
    }
    this.#timer = undefined;
    this.#schedulePoll();
  }
}
