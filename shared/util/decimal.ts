const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A decimal number as people and CSV writers write them ("1", "-2.5", ".5", "1e-3"); anything
 * else ("0x10", "0b1", "Infinity", "", " ") is NaN, where Number() would accept some of them.
 */
export function parseDecimal(text: string): number {
  return DECIMAL.test(text) ? Number(text) : Number.NaN;
}
