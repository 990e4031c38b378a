import { z } from 'zod';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';
import { printable } from '../../shared/util/printable.ts';
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

/**
 * A query string whose percent-escapes are not UTF-8 (`?reason=%FF`, an encoded surrogate
 * `%ED%A0%80`, a sequence cut short `ok%C3`) is refused: decoded leniently, as express does,
 * each became U+FFFD, stored in the audit log for good in place of what the caller meant. A `%`
 * not followed by two hex digits is left as it is, as express reads it.
 */
export function refuseNonUtf8Query(url: string): void {
  const at = url.indexOf('?');
  if (at < 0) return;
  for (const part of url.slice(at + 1).split('&')) {
    try {
      decodeURIComponent(part.replace(/%(?![0-9A-Fa-f]{2})/g, '%25'));
    } catch {
      const name = part.split('=', 1)[0]!;
      let shownName = name;
      try {
        shownName = decodeURIComponent(name);
      } catch {
        // The name itself is what is not UTF-8: shown as sent.
      }
      throw new ServiceError('bad_request', `query.${printable(shownName.slice(0, 100))}: its percent-escapes are not UTF-8 text; encode the value as UTF-8 (encodeURIComponent does)`);
    }
  }
}
