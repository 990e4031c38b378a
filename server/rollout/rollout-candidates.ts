import type { SqlEngine } from '../store/sql-engine.ts';
import { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';
import { isTerminal } from './rollout-state-machine.ts';

/**
 * The rollout still rolling `model@version` out (not yet Completed, Failed, Aborted or RolledBack),
 * as `rollout ID (Phase)`, else null: the registry does not retire a version a rollout would go
 * on assigning and make production.
 */
export function rolloutOfCandidate(engine: SqlEngine): (model: string, version: string) => Promise<string | null> {
  const rollouts = new StoreRolloutRepository(engine);
  return async (model, version) => {
    for (const id of await rollouts.list({ model, unfinished: true })) {
      const record = await rollouts.load(id);
      if (record && !isTerminal(record.state) && record.state.spec.candidateVersion === version) return `rollout ${id} (${record.state.phase})`;
    }
    return null;
  };
}
