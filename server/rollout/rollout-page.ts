import { countedPage, DEFAULT_LIST_PAGE, type ListPage } from '../app/list-page.ts';
import type { RolloutService } from './rollout-service.ts';
import type { RolloutSummary } from './rollout-views.ts';

export interface RolloutPageQuery {
  model?: string | undefined;
  limit?: number | undefined;
  offset?: number | undefined;
  /** The page that holds this rollout instead of `offset` (a link to a rollout opens its page of the list). */
  containing?: string | undefined;
}

/**
 * GET /api/rollouts and gRPC ListRollouts: the newest rollouts (of `model`) after skipping `offset`,
 * or the page of `limit` that holds rollout `containing`, with the offset it starts at, total and more.
 */
export async function rolloutPage(service: RolloutService, query: RolloutPageQuery): Promise<ListPage<RolloutSummary> & { offset: number }> {
  const { model, limit = DEFAULT_LIST_PAGE, containing } = query;
  const filter = model === undefined ? {} : { model };
  const offset = containing === undefined ? (query.offset ?? 0) : Math.floor((await service.placeOf(containing, filter)) / limit) * limit;
  const page = await countedPage(
    offset,
    () => service.count(filter),
    () => service.list({ ...filter, offset, limit }),
  );
  return { ...page, offset };
}
