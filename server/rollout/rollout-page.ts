import { countedPage, DEFAULT_LIST_PAGE, type ListPage } from '../app/list-page.ts';
import type { RolloutService } from './rollout-service.ts';
import type { RolloutSummary } from './rollout-views.ts';

/** GET /api/rollouts and gRPC ListRollouts: the newest rollouts (of `model`) after skipping `offset`, with total and more. */
export function rolloutPage(service: RolloutService, query: { model?: string | undefined; limit?: number | undefined; offset?: number | undefined }): Promise<ListPage<RolloutSummary>> {
  const { model, limit = DEFAULT_LIST_PAGE, offset = 0 } = query;
  const filter = model === undefined ? {} : { model };
  return countedPage(
    offset,
    () => service.count(filter),
    () => service.list({ ...filter, offset, limit }),
  );
}
