const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A decimal number as people and CSV writers write them ("1", "-2.5", ".5", "1e-3"); anything
 * else ("0x10", "0b1", "Infinity", "", " ") is NaN, where Number() would accept some of them.
 */
export function parseDecimal(text: string): number {
  return DECIMAL.test(text) ? Number(text) : Number.NaN;
}

/** The largest finite float32: features, targets and model inputs are computed in float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** A number a float32 tensor holds as itself: finite, and not Infinity once stored (1e39 would be). */
export function isFloat32(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && Math.abs(value) <= FLOAT32_MAX;
}
