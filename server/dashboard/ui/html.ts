import { formatMse, formatR2 } from '../../../shared/model/scoring.ts';

/** Escapes text for HTML; every value the API returns goes through it. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function table(headers: readonly string[], rows: readonly string[], empty: string): string {
  if (rows.length === 0) return `<p class="muted">${esc(empty)}</p>`;
  // Scrolls sideways in its own box on narrow screens, rather than widening the page.
  return `<div class="table-wrap"><table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

export function formatScore(metrics: Record<string, unknown> | null | undefined): string {
  if (!metrics) return '';
  if (typeof metrics.accuracy === 'number') return `acc ${(metrics.accuracy * 100).toFixed(2)}%`;
  if (typeof metrics.mse === 'number') return `mse ${formatMse(metrics.mse)}${typeof metrics.r2 === 'number' ? ` r² ${formatR2(metrics.r2)}` : ''}`;
  return '';
}

export function ago(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '';
  const ms = Date.now() - (typeof iso === 'number' ? iso : Date.parse(iso));
  if (!Number.isFinite(ms)) return '';
  if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))} s ago`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`;
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h ago`;
  return `${Math.round(ms / 86_400_000)} d ago`;
}

/** A moment as the local time of day (24 h, as the stale badge shows it), with its date unless it is today. */
export function when(iso: string | number): string {
  const date = new Date(iso);
  if (!Number.isFinite(date.getTime())) return '';
  const time = date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  return date.toDateString() === new Date().toDateString() ? time : `${date.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' })} ${time}`;
}

/** A moment in UTC, to the second: the tooltip of a relative or local time (the fleet and its operators span time zones). */
export function utc(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '';
  const date = new Date(iso);
  return Number.isFinite(date.getTime()) ? `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC` : '';
}
