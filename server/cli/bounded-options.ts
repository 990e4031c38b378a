import { InvalidArgumentError } from 'commander';
import { parseInteger, parseLifetimeSeconds } from '../../shared/cli/option-parsers.ts';
import { MAX_BLOB_GC_AGE_S, MIN_BLOB_GC_AGE_S } from '../artifacts/blob-garbage-collector.ts';
import { MAX_LIST_OFFSET } from '../app/list-page.ts';

/**
 * Commander parsers for options whose range the server also checks: checking it here names the
 * flag (`option '--limit <n>' argument '-1' is invalid. ...`) instead of the gRPC field, and never
 * sends a value the server would read differently (0 is "unset" on the wire).
 */

export const MAX_LIST_LIMIT = 1000;

/** `--limit`: a whole number from 1 to 1000 (the servers' page size bound). */
export function parseLimit(value: string): number {
  const limit = parseInteger(value);
  if (limit < 1 || limit > MAX_LIST_LIMIT) throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
  return limit;
}

/** `--offset`: the newest entries to skip, a whole number from 0 to 1,000,000,000. */
export function parseOffset(value: string): number {
  const offset = parseInteger(value);
  if (offset < 0 || offset > MAX_LIST_OFFSET) throw new InvalidArgumentError('must be a whole number from 0 to 1000000000');
  return offset;
}

/**
 * The line a list page ends with when older entries follow it (`rollouts 1–20 of 131 (newest first); more: --offset 20`);
 * undefined on the last page.
 */
export function pageFooter(noun: string, page: { offset: number; shown: number; total: number; more: boolean }): string | undefined {
  if (!page.more) return undefined;
  const next = page.offset + page.shown;
  const range = page.shown > 0 ? `${page.offset + 1}–${next}` : `none from ${page.offset + 1}`;
  return `${noun} ${range} of ${page.total} (newest first); more: --offset ${next}`;
}

/** `rollout status --devices`: device states in the detail, 1 to 1,000,000. */
export function parseDeviceStates(value: string): number {
  const count = parseInteger(value);
  if (count < 1 || count > 1_000_000) throw new InvalidArgumentError('must be a whole number from 1 to 1000000');
  return count;
}

/** `blobs gc --min-age`: a duration from 60 s (an upload on its way to registration is never removed) to 10 years, in whole seconds. */
export function parseBlobGcMinAge(value: string): number {
  // The lifetimes tokens take too (7d, 2w, 1d12h): an age of a week is typed as one, not as 168h.
  let seconds: number;
  try {
    seconds = parseLifetimeSeconds(value);
  } catch {
    throw new InvalidArgumentError(`must be a duration of at least ${MIN_BLOB_GC_AGE_S}s, such as 90s, 30m, 1h, 7d or 2w`);
  }
  if (seconds < MIN_BLOB_GC_AGE_S) throw new InvalidArgumentError(`must be at least ${MIN_BLOB_GC_AGE_S}s, so an upload whose registration is on its way is never removed`);
  if (seconds > MAX_BLOB_GC_AGE_S) throw new InvalidArgumentError(`must be at most ${MAX_BLOB_GC_AGE_S / 86400} days`);
  return seconds;
}
