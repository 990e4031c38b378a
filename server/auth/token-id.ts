import { z } from 'zod';

/** A token's public id (never its secret), as REST paths, gRPC requests and the CLI take it. */
export const TokenIdSchema = z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be a token id');
