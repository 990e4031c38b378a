/**
 * Offset paging of the newest-first lists (rollouts, jobs), shared by REST (GET /api/rollouts,
 * GET /api/jobs) and gRPC (ListRollouts, ListJobs), so the two cannot page differently.
 */

/** The page when no limit is asked. */
export const DEFAULT_LIST_PAGE = 100;
/** The largest page. */
export const MAX_LIST_PAGE = 1000;
/** The newest entries skipped at most: the stores skip them in SQL (OFFSET), so this only keeps the number sane. */
export const MAX_LIST_OFFSET = 1_000_000_000;

export interface ListPage<T> {
  items: T[];
  /** Every entry (of the filter): at least what the pages hold. */
  total: number;
  /** Whether older entries follow this page. */
  more: boolean;
}

/**
 * A page of `list` after skipping `offset`, with `total` and `more`. Two reads, counted first: an entry
 * added in between is on the page but not yet counted, so `more` never offers an empty older page, and
 * `total` is at least what the pages hold.
 */
export async function countedPage<T>(offset: number, count: () => Promise<number>, list: () => Promise<T[]>): Promise<ListPage<T>> {
  const counted = await count();
  const items = await list();
  const total = items.length > 0 ? Math.max(counted, offset + items.length) : counted;
  return { items, total, more: offset + items.length < total };
}
