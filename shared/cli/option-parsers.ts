import { InvalidArgumentError } from 'commander';
import { parseDecimal } from '../util/numbers.ts';
import { DURATION_HINT, parseDuration } from '../util/duration.ts';

/** Commander argument parsers: a bad value is reported by commander with the flag's name. */
export function parseNumber(value: string): number {
  const number = parseDecimal(value.trim());
  if (!Number.isFinite(number)) throw new InvalidArgumentError('not a decimal number');
  return number;
}

export function parseInteger(value: string): number {
  const number = parseNumber(value);
  if (!Number.isInteger(number)) throw new InvalidArgumentError('not a whole number');
  return number;
}

export function parseNumberList(value: string): number[] {
  const parts = value.split(',').map((part) => part.trim());
  if (parts.some((part) => part === '')) throw new InvalidArgumentError('expected numbers separated by commas');
  return parts.map(parseNumber);
}

/** A duration such as 90s, 30m or 1h30m, in whole seconds. */
export function parseDurationSeconds(value: string): number {
  const ms = parseDuration(value.trim());
  if (ms === undefined) throw new InvalidArgumentError(DURATION_HINT);
  return Math.round(ms / 1000);
}

/**
 * A lifetime such as 90d, 2w, 12h or 1d12h, in whole seconds: the units of parseDurationSeconds,
 * and days (d) and weeks (w), which those do not take (a token's, a certificate's lifetime).
 */
export function parseLifetimeSeconds(value: string): number {
  const text = value.trim();
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$/.test(text)) throw new InvalidArgumentError('must be a duration such as 90d, 2w, 12h or 1d12h');
  let seconds = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) {
    seconds += Number(amount) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[unit as 'ms' | 's' | 'm' | 'h' | 'd' | 'w'];
  }
  // Up to the next whole second: 400ms and 0.5s are both 1 s, not one refused and the other taken.
  return Math.max(0, Math.ceil(seconds - 1e-9));
}

/** One of `choices`, as written (`--role bogus` is refused here, naming the flag and the choices, before any server is asked). */
export function parseChoice<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be ${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}`);
    return value as T;
  };
}
