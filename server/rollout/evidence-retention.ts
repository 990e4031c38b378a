import { RetentionSweep, type RetentionSweepOptions } from '../store/retention-sweep.ts';
import type { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';

/**
 * Trims the per-device evidence (values, device lists in queries) from the decision logs of
 * rollouts that finished more than --report-retention-days ago: it is the device reports' data,
 * kept as long as they are, while verdicts and what decided them stay for good.
 */
export function evidenceRetention(
  rollouts: Pick<StoreRolloutRepository, 'trimEvidenceBefore'>,
  options: Omit<RetentionSweepOptions, 'what' | 'done' | 'removeBefore'>,
): RetentionSweep {
  return new RetentionSweep({
    ...options,
    what: 'per-device evidence of finished rollouts',
    done: 'trimmed',
    removeBefore: (cutoff) => rollouts.trimEvidenceBefore(cutoff, options.clock?.()),
  });
}
