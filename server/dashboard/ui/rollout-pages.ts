import { esc } from './html.ts';

/** Rollouts per page of the list: each refresh downloads the page shown, not every rollout. */
export const ROLLOUT_PAGE = 100;

/** One page of GET /api/rollouts?offset=…&limit=…: `more` when older rollouts follow it. */
export interface RolloutPage<T> {
  rollouts: T[];
  more: boolean;
}

/** An answer from a server without paging (a bare `rollouts`) counts as the whole list. */
export function rolloutPageFrom<T>(json: { rollouts?: T[]; more?: boolean }): RolloutPage<T> {
  return { rollouts: json.rollouts ?? [], more: json.more === true };
}

const plural = (n: number) => `${n} rollout${n === 1 ? '' : 's'}`;

/**
 * What the list shows out of how many there are, with buttons to the newer and older pages
 * (data-page). Without an older page the count is exact; with one, the server says only that
 * more follow.
 */
export function renderRolloutPager(offset: number, shown: number, more: boolean): string {
  if (offset === 0 && !more) return shown === 0 ? '' : `<p class="muted pager" id="rollouts-count">All ${plural(shown)}</p>`;
  const first = offset + 1;
  const last = offset + shown;
  const range = shown === 0 ? `No rollouts from number ${first} on` : `Rollouts ${first}–${last}, newest first,`;
  const of = more ? `of more than ${last}` : shown === 0 ? '' : `of ${last}`;
  const button = (page: 'newer' | 'older', label: string, enabled: boolean, title: string) =>
    `<button type="button" data-page="${page}" title="${esc(title)}" ${enabled ? '' : 'disabled'}>${label}</button>`;
  return `<p class="muted pager" id="rollouts-count"><span>${esc(`${range} ${of}`.trim())}</span>
    ${button('newer', '‹ Newer', offset > 0, `The ${ROLLOUT_PAGE} newer rollouts`)}
    ${button('older', 'Older ›', more, more ? `The next ${ROLLOUT_PAGE} older rollouts` : 'No older rollouts')}</p>`;
}
