import { esc } from './html.ts';

/** Rollouts per page of the list: each refresh downloads the page shown, not every rollout. */
export const ROLLOUT_PAGE = 100;

/** One page of GET /api/rollouts?offset=…&limit=…: `more` when older rollouts follow it, `total` how many there are in all. */
export interface RolloutPage<T> {
  rollouts: T[];
  more: boolean;
  total?: number;
}

/** An answer from a server without paging (a bare `rollouts`) counts as the whole list; one without `total` is not counted. */
export function rolloutPageFrom<T>(json: { rollouts?: T[]; more?: boolean; total?: number }): RolloutPage<T> {
  return { rollouts: json.rollouts ?? [], more: json.more === true, ...(typeof json.total === 'number' ? { total: json.total } : {}) };
}

const plural = (n: number) => `${n} rollout${n === 1 ? '' : 's'}`;

/** "of N" after the range the page shows: counted by the server, or (an older server) exact on the last page only. */
function outOf(shown: number, last: number, more: boolean, total: number | undefined): string {
  if (shown === 0) return total === undefined ? '' : `(${plural(total)} in all)`;
  if (total !== undefined) return `of ${Math.max(total, last)}`;
  return more ? `of more than ${last}` : `of ${last}`;
}

/**
 * What the list shows out of how many there are (`total`, as the server counts them), with
 * buttons to the newer and older pages (data-page). Without a count (an older server) the number
 * is exact on the last page only; before it, the list says only that more follow.
 */
export function renderRolloutPager(offset: number, shown: number, more: boolean, total?: number): string {
  if (offset === 0 && !more) return shown === 0 ? '' : `<p class="muted pager" id="rollouts-count">All ${plural(shown)}</p>`;
  const first = offset + 1;
  const last = offset + shown;
  const range = shown === 0 ? `No rollouts from number ${first} on` : `Rollouts ${first}–${last}, newest first,`;
  const of = outOf(shown, last, more, total);
  const button = (page: 'newer' | 'older', label: string, enabled: boolean, title: string) =>
    `<button type="button" data-page="${page}" title="${esc(title)}" ${enabled ? '' : 'disabled'}>${label}</button>`;
  return `<p class="muted pager" id="rollouts-count"><span>${esc(`${range} ${of}`.trim())}</span>
    ${button('newer', '‹ Newer', offset > 0, `The ${ROLLOUT_PAGE} newer rollouts`)}
    ${button('older', 'Older ›', more, more ? `The next ${ROLLOUT_PAGE} older rollouts` : 'No older rollouts')}</p>`;
}
