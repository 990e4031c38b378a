import { VersionStatusRepository } from '../../../server/store/repositories/version-status-repository.ts';
import type { SqlExecutor } from '../../../server/store/sql-engine.ts';

/** The status a rollout records when its analysis fails the candidate, as tests give it to a version. */
export const FAILED_STATUS = { status: 'failed', reason: 'analysis failed at step 2: accuracy below 0.8', at: '2026-03-01T09:00:00.000Z' } as const;

/** Records FAILED_STATUS for model@version, as a rollout that failed it would. */
export async function recordFailedVersion(db: SqlExecutor, model: string, version: string): Promise<void> {
  await new VersionStatusRepository(db).record({ commandId: 'cmd-1', model, version, ...FAILED_STATUS });
}
