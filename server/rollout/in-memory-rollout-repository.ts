import { TERMINAL_PHASES, type DecisionLogEntry, type RolloutAction, type RolloutState } from './rollout-state.ts';
import { RevisionConflictError, type RolloutCommit, type RolloutCountFilter, type RolloutListFilter, type RolloutRecord, type RolloutRepository } from './rollout-repository.ts';

/**
 * RolloutRepository in memory, for tests and the embedded demo. Values are deep-copied in and
 * out, as a database would, so callers cannot change stored state by mutating objects.
 */
export class InMemoryRolloutRepository implements RolloutRepository {
  readonly #records = new Map<string, { state: RolloutState; pendingActions: RolloutAction[]; revision: number; executed: Set<string>; decisions: DecisionLogEntry[]; order: number }>();
  #order = 0;

  async create(record: { state: RolloutState; pendingActions: readonly RolloutAction[]; decisions: readonly DecisionLogEntry[] }): Promise<void> {
    if (this.#records.has(record.state.id)) throw new Error(`rollout ${record.state.id} already exists`);
    this.#records.set(record.state.id, {
      state: structuredClone(record.state),
      pendingActions: structuredClone([...record.pendingActions]),
      revision: 1,
      executed: new Set(),
      decisions: structuredClone([...record.decisions]),
      order: this.#order++,
    });
  }

  async load(id: string): Promise<RolloutRecord | undefined> {
    const record = this.#records.get(id);
    if (!record) return undefined;
    return { state: structuredClone(record.state), pendingActions: structuredClone(record.pendingActions), revision: record.revision };
  }

  async revisionOf(id: string): Promise<number | undefined> {
    return this.#records.get(id)?.revision;
  }

  async list(filter: RolloutListFilter = {}): Promise<readonly string[]> {
    const offset = filter.offset ?? 0;
    const finished = filter.finishedByLastChange ? new Set(this.#matching({ ...filter, unfinished: true })) : undefined;
    return this.#matching(filter)
      .filter((record) => !finished?.has(record))
      .sort((a, b) => (finished ? b.state.updatedAt - a.state.updatedAt || (b.state.id > a.state.id ? 1 : b.state.id < a.state.id ? -1 : 0) : b.order - a.order))
      .slice(offset, filter.limit === undefined ? undefined : offset + filter.limit)
      .map((record) => record.state.id);
  }

  async count(filter: RolloutCountFilter = {}): Promise<number> {
    return this.#matching(filter).length;
  }

  #matching(filter: RolloutCountFilter) {
    const after = filter.newerThan === undefined ? undefined : (this.#records.get(filter.newerThan)?.order ?? Number.POSITIVE_INFINITY);
    return [...this.#records.values()]
      .filter((record) => after === undefined || record.order > after)
      .filter((record) => filter.model === undefined || record.state.spec.model === filter.model)
      .filter((record) => !filter.unfinished || record.pendingActions.length > 0 || !TERMINAL_PHASES.includes(record.state.phase) || record.state.devices.some((device) => device.delivery === 'retrying' || device.delivery === 'pending'));
  }

  async commit(id: string, commit: RolloutCommit): Promise<number> {
    const record = this.#records.get(id);
    if (!record) throw new Error(`rollout ${id} does not exist`);
    if (record.revision !== commit.expectedRevision) throw new RevisionConflictError(id, commit.expectedRevision, record.revision);
    record.state = structuredClone(commit.state);
    record.pendingActions = structuredClone([...commit.pendingActions]);
    for (const actionId of commit.executedActionIds) record.executed.add(actionId);
    record.decisions.push(...structuredClone([...commit.decisions]));
    record.revision += 1;
    return record.revision;
  }

  async isExecuted(id: string, actionId: string): Promise<boolean> {
    return this.#records.get(id)?.executed.has(actionId) ?? false;
  }

  async decisions(id: string, options: { afterId?: string; limit?: number } = {}): Promise<readonly DecisionLogEntry[]> {
    const all = this.#records.get(id)?.decisions ?? [];
    const start = options.afterId ? all.findIndex((entry) => entry.id === options.afterId) + 1 : 0;
    const slice = all.slice(start, options.limit === undefined ? undefined : start + options.limit);
    return structuredClone(slice);
  }
}
