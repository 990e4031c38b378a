import type { z } from 'zod';
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
