import { z } from 'zod';

/** Ten years, in seconds: the longest expiry a token may be given. */
export const MAX_TOKEN_LIFETIME_S = 315_360_000;

/** How long a new token works, in seconds, as REST's expiresInSeconds, gRPC's expires_in_s and the CLI's --expires-in take it. */
// The size first, and alone when it is wrong: a number past 2^53 is no safe integer either, and
// "must be a whole number" said of 99999999999999999999 is false.
export const TokenLifetimeSchema = z
  .number()
  .max(MAX_TOKEN_LIFETIME_S, { error: `must be at most ten years (${MAX_TOKEN_LIFETIME_S} seconds)`, abort: true })
  .min(1, { error: 'must be at least 1 second', abort: true })
  .int('must be a whole number of seconds');
