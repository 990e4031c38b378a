import { countedPage, DEFAULT_LIST_PAGE, type ListPage } from '../app/list-page.ts';
import type { JobRecord } from '../store/repositories/jobs-repository.ts';
import type { JobService } from './job-service.ts';

/** GET /api/jobs and gRPC ListJobs: the newest jobs after skipping `offset`, with total and more. */
export function jobPage(jobs: JobService, query: { limit?: number | undefined; offset?: number | undefined }): Promise<ListPage<JobRecord>> {
  const { limit = DEFAULT_LIST_PAGE, offset = 0 } = query;
  return countedPage(
    offset,
    () => jobs.count(),
    () => jobs.list(limit, offset),
  );
}
