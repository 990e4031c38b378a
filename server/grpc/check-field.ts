import type { z } from 'zod';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';

/** One request field checked against its schema; a failure is INVALID_ARGUMENT naming the field (`after_seq: …`). */
export function checkField<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ServiceError('bad_request', describeIssues(parsed.error, field));
  return parsed.data;
}
