import { RetentionSweep, type RetentionSweepOptions } from '../store/retention-sweep.ts';
import type { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';

/**
 * Trims the per-device evidence (values, device lists in queries) from the decision logs of
 * rollouts that finished more than --report-retention-days ago: it is the device reports' data,
 * kept as long as they are, while verdicts and what decided them stay for good. Their
 * executed-action records go too (they guard pending actions, and those rollouts have none).
 */
export function evidenceRetention(
  rollouts: Pick<StoreRolloutRepository, 'trimEvidenceBefore' | 'deleteExecutedActionsBefore'>,
  options: Omit<RetentionSweepOptions, 'what' | 'done' | 'removeBefore'>,
): RetentionSweep {
  return new RetentionSweep({
    ...options,
    what: 'per-device evidence and executed-action records of finished rollouts',
    done: 'trimmed',
    removeBefore: async (cutoff) => (await rollouts.trimEvidenceBefore(cutoff, options.clock?.())) + (await rollouts.deleteExecutedActionsBefore(cutoff)),
  });
}
