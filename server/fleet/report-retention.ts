import { RetentionSweep, type RetentionSweepOptions } from '../store/retention-sweep.ts';
import type { DeviceReportsRepository } from '../store/repositories/device-reports-repository.ts';

/** Deletes device reports (assignment answers, benchmarks) that arrived more than --report-retention-days ago. */
export function reportRetention(
  reports: Pick<DeviceReportsRepository, 'deleteReceivedBefore'>,
  options: Omit<RetentionSweepOptions, 'what' | 'done' | 'removeBefore'>,
): RetentionSweep {
  return new RetentionSweep({ ...options, what: 'device reports', done: 'deleted', removeBefore: (cutoff) => reports.deleteReceivedBefore(cutoff) });
}
