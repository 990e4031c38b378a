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

/** One of `choices`, as written (`--role bogus` is refused here, naming the flag and the choices, before any server is asked). */
export function parseChoice<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be ${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}`);
    return value as T;
  };
}
