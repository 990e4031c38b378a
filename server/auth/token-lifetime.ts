import { z } from 'zod';

/** Ten years, in seconds: the longest expiry a token may be given. */
export const MAX_TOKEN_LIFETIME_S = 315_360_000;

/** How long a new token works, in seconds, as REST's expiresInSeconds, gRPC's expires_in_s and the CLI's --expires-in take it. */
export const TokenLifetimeSchema = z
  .number()
  .int('must be a whole number of seconds')
  .min(1, 'must be at least 1 second')
  .max(MAX_TOKEN_LIFETIME_S, `must be at most ten years (${MAX_TOKEN_LIFETIME_S} seconds)`);
