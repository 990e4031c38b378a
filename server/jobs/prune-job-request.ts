import { z } from 'zod';
import { PruneOptionsSchema } from '../pruning/options.ts';
import { ModelNameSchema } from '../registry/names.ts';

/** The data set of a pruning job: CSV text in the request, or a file under the server's --data-root. */
export const PruneDataSchema = z.union([
  z.strictObject({ csv: z.string().min(1).describe('CSV text with a header row') }),
  z.strictObject({ path: z.string().min(1).describe('a CSV file, by its path relative to the server --data-root') }),
], {
  // zod's own "Invalid input" said neither what was wrong nor what is expected (missing, both given, or a bad type).
  error: (issue) => `${issue.input === undefined ? 'required: ' : ''}expected {"csv": CSV text} or {"path": a file under the server --data-root}, exactly one of them`,
});

/** POST /api/jobs/prune (and gRPC StartPrune, whose JSON options map onto `options`). */
export const PruneJobRequestSchema = z.strictObject({
  /** The model name both resulting versions (general and pruned) are registered under. */
  name: ModelNameSchema,
  label: z.string().min(1),
  task: z.enum(['classification', 'regression']).optional(),
  data: PruneDataSchema,
  options: PruneOptionsSchema.optional(),
});

/** The keys a request's raw (unvalidated) options object gave a value, for JobService.startPrune's givenOptions. */
export function givenKeys(rawOptions: unknown): string[] {
  if (rawOptions === null || typeof rawOptions !== 'object' || Array.isArray(rawOptions)) return [];
  return Object.entries(rawOptions).filter(([, value]) => value !== undefined && value !== null).map(([key]) => key);
}

export type PruneJobRequest = z.output<typeof PruneJobRequestSchema>;
export type PruneJobRequestInput = z.input<typeof PruneJobRequestSchema>;

/** What a prune request's errors call its fields: REST's body paths, or gRPC StartPrune's field names. */
export interface PruneRequestFields {
  csv: string;
  path: string;
  options: string;
}
export const REST_PRUNE_FIELDS: PruneRequestFields = { csv: 'body.data.csv', path: 'body.data.path', options: 'body.options' };
