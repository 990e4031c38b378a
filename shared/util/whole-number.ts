import { z } from 'zod';

const WHOLE = 'must be a whole number';

/**
 * A whole number from min to max. Not zod's .int(): it also checks ±(2^53 − 1), so a number beyond
 * that (1e20) failed two bounds, and the one reported first was zod's, not the field's. The JSON
 * schema (the OpenAPI document) still says integer: a refine is invisible to it.
 */
export function wholeNumber(min: number, max: number) {
  return z.number().min(min).max(max).refine(Number.isInteger, WHOLE).meta({ type: 'integer' });
}

/** wholeNumber read from text (a flag, an environment variable). */
export function coercedWholeNumber(min: number, max: number) {
  return z.coerce.number().min(min).max(max).refine(Number.isInteger, WHOLE).meta({ type: 'integer' });
}
