import { z } from 'zod';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';
import { describeDataProblem, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';

/**
 * Parses one part of a request (params, query, body); a 400 naming every bad field otherwise,
 * or naming the first NUL character or `__proto__` key (see untrustedDataProblem).
 */
export function validatePart<T>(schema: z.ZodType<T> | undefined, value: unknown, part: string): T {
  const problem = untrustedDataProblem(value);
  if (problem) throw new ServiceError('bad_request', describeDataProblem(problem, part));
  if (!schema) return value as T;
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ServiceError('bad_request', describeIssues(parsed.error, part));
  return parsed.data;
}

/**
 * A query parameter the route takes, sent more than once (`?model=a&model=b`), is refused by its
 * name before validation, which would otherwise say "expected string, received array". One it
 * does not take is left to validation, which calls it an unknown field.
 */
export function refuseRepeatedQuery(query: Record<string, unknown>, schema: z.ZodType | undefined): void {
  const known = schema instanceof z.ZodObject ? new Set(Object.keys(schema.shape)) : null;
  for (const [key, value] of Object.entries(query)) {
    if (Array.isArray(value) && (known === null || known.has(key))) throw new ServiceError('bad_request', `query.${key}: given more than once; send it once`);
  }
}
