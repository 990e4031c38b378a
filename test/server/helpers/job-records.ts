import type { JobRecord } from '../../../server/store/repositories/jobs-repository.ts';

/** A finished (failed) job record `<prefix>-<n>`, created n seconds after 2026-01-01, to write straight to the store. */
export function finishedJob(prefix: string, n: number): JobRecord {
  const at = new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
  return {
    id: `${prefix}-${n}`,
    kind: 'prune',
    state: 'failed',
    request: {},
    progress: null,
    result: null,
    error: 'cancelled by token:test',
    createdAt: at,
    updatedAt: at,
    createdBy: 'token:test',
    node: 'elsewhere',
  };
}
