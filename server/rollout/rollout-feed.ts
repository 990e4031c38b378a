import type { DecisionLogEntry, RolloutAction, RolloutState } from './rollout-state.ts';
import type { RolloutCommit, RolloutCountFilter, RolloutListFilter, RolloutRecord, RolloutRepository } from './rollout-repository.ts';

export type RolloutFeedEvent = { readonly type: 'state'; readonly record: RolloutRecord } | { readonly type: 'decision'; readonly decision: DecisionLogEntry };

interface Subscriber {
  readonly id: string;
  readonly listener: (event: RolloutFeedEvent) => void;
  revision: number;
  lastDecisionId: string | undefined;
  running: Promise<void> | undefined;
  again: boolean;
  closed: boolean;
}

/**
 * Live changes of rollouts for SSE and gRPC watchers. Each subscriber first gets the current
 * state and the whole decision log, then every new revision and decision. Changes committed by
 * this process are pushed at once (notify); changes by another server (the leader, when this one
 * follows) are picked up by polling the store every pollMs while anyone watches.
 */
export class RolloutFeed {
  readonly #repository: RolloutRepository;
  readonly #pollMs: number;
  readonly #subscribers = new Set<Subscriber>();
  #timer: NodeJS.Timeout | undefined;

  constructor(repository: RolloutRepository, options: { pollMs?: number } = {}) {
    this.#repository = repository;
    this.#pollMs = options.pollMs ?? 1000;
  }

  subscribe(id: string, listener: (event: RolloutFeedEvent) => void, onError: (error: unknown) => void): () => void {
    const subscriber: Subscriber = { id, listener, revision: 0, lastDecisionId: undefined, running: undefined, again: false, closed: false };
    this.#subscribers.add(subscriber);
    this.#pump(subscriber, onError);
    this.#timer ??= setInterval(() => {
      for (const each of this.#subscribers) this.#pump(each, () => {});
    }, this.#pollMs);
    return () => {
      subscriber.closed = true;
      this.#subscribers.delete(subscriber);
      if (this.#subscribers.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  /** A rollout changed in this process. */
  notify(id: string): void {
    for (const subscriber of this.#subscribers) if (subscriber.id === id) this.#pump(subscriber, () => {});
  }

  close(): void {
    for (const subscriber of this.#subscribers) subscriber.closed = true;
    this.#subscribers.clear();
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Sends what the subscriber has not seen; one pass at a time per subscriber, repeated if asked meanwhile. */
  #pump(subscriber: Subscriber, onError: (error: unknown) => void): void {
    if (subscriber.running) {
      subscriber.again = true;
      return;
    }
    subscriber.running = (async () => {
      do {
        subscriber.again = false;
        // Decisions are written only with a commit, which moves the revision: while it stands there
        // is nothing new, and the poll costs one small query, not a read of the whole state.
        const revision = await this.#repository.revisionOf(subscriber.id);
        if (subscriber.closed || revision === undefined || revision === subscriber.revision) continue;
        const record = await this.#repository.load(subscriber.id);
        if (subscriber.closed || !record) return;
        // Decisions first: a watcher that ends on a terminal state has seen the decisions behind it.
        const decisions = await this.#repository.decisions(subscriber.id, subscriber.lastDecisionId ? { afterId: subscriber.lastDecisionId } : {});
        if (subscriber.closed) return;
        // A commit between the two reads (another server's, on a shared database) put its decisions
        // in the list but not its state in the record: the record is older than the decisions, and
        // sent after them it would show a newer decision, then an older state. The decisions go
        // out; the state waits for the next read, which has them all behind it.
        const settled = (await this.#repository.revisionOf(subscriber.id)) === record.revision;
        for (const decision of decisions) {
          if (subscriber.closed) return;
          subscriber.lastDecisionId = decision.id;
          subscriber.listener({ type: 'decision', decision });
        }
        if (!settled) {
          subscriber.again = true;
          continue;
        }
        if (record.revision > subscriber.revision && !subscriber.closed) {
          subscriber.revision = record.revision;
          subscriber.listener({ type: 'state', record });
        }
      } while (subscriber.again && !subscriber.closed);
    })()
      .catch(onError)
      .finally(() => (subscriber.running = undefined));
  }
}

/** A RolloutRepository that tells the feed about every change it stores. */
export class NotifyingRolloutRepository implements RolloutRepository {
  constructor(
    private readonly inner: RolloutRepository,
    private readonly feed: RolloutFeed,
  ) {}

  async create(record: { state: RolloutState; pendingActions: readonly RolloutAction[]; decisions: readonly DecisionLogEntry[] }): Promise<void> {
    await this.inner.create(record);
    this.feed.notify(record.state.id);
  }

  load(id: string): Promise<RolloutRecord | undefined> {
    return this.inner.load(id);
  }

  revisionOf(id: string): Promise<number | undefined> {
    return this.inner.revisionOf(id);
  }

  list(filter?: RolloutListFilter): Promise<readonly string[]> {
    return this.inner.list(filter);
  }

  count(filter?: RolloutCountFilter): Promise<number> {
    return this.inner.count(filter);
  }

  async commit(id: string, commit: RolloutCommit): Promise<number> {
    const revision = await this.inner.commit(id, commit);
    this.feed.notify(id);
    return revision;
  }

  isExecuted(id: string, actionId: string): Promise<boolean> {
    return this.inner.isExecuted(id, actionId);
  }

  decisions(id: string, options?: { afterId?: string; limit?: number }): Promise<readonly DecisionLogEntry[]> {
    return this.inner.decisions(id, options);
  }
}
