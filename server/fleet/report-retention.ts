import { RetentionSweep, type RetentionSweepOptions } from '../store/retention-sweep.ts';
import type { FleetRepositories } from './fleet-store.ts';

/**
 * Deletes what devices sent and were sent that is older than --report-retention-days: device
 * reports (assignment answers, benchmarks), and the records of the assignments and fleet
 * commands they answered (or sent to devices since revoked). Those still unanswered stay (a
 * device offline since may answer them yet), and so does each device's retained assignment.
 */
export function reportRetention(
  repos: Pick<FleetRepositories, 'reports' | 'assignments' | 'commands'>,
  options: Omit<RetentionSweepOptions, 'what' | 'done' | 'removeBefore'>,
): RetentionSweep {
  return new RetentionSweep({
    ...options,
    what: 'device reports, answered assignments and fleet commands',
    done: 'deleted',
    removeBefore: async (cutoff) =>
      (await repos.reports.deleteReceivedBefore(cutoff)) + (await repos.assignments.deleteAnsweredBefore(cutoff)) + (await repos.commands.deleteAnsweredBefore(cutoff)),
  });
}
