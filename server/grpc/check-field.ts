import { z } from 'zod';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';

/** One request field checked against its schema; a failure is INVALID_ARGUMENT naming the field (`after_seq: …`). */
export function checkField<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ServiceError('bad_request', describeIssues(parsed.error, field));
  return parsed.data;
}

/**
 * A gRPC request checked against the schema of the REST body it maps to (`body`); a failure is
 * INVALID_ARGUMENT naming the proto's fields, not the body's: `fields` maps each body field whose
 * name differs to its proto field (`brokerUrl` → `broker_url`): `broker_url: …`,
 * `selector_json.matchLabels.a: …`, as every gRPC refusal names a field (`request: …` the whole message).
 */
export function checkRequest<T>(schema: z.ZodType<T>, body: Record<string, unknown>, fields: Readonly<Record<string, string>>): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const renamed = parsed.error.issues.map((issue) => {
    const [head, ...rest] = issue.path;
    const field = typeof head === 'string' && Object.hasOwn(fields, head) ? fields[head]! : head;
    // Unknown keys are the body's, which the handler built: none reach here from a caller.
    return { ...issue, path: field === undefined ? [] : [field, ...rest] };
  });
  throw new ServiceError('bad_request', describeIssues(new z.ZodError(renamed), ''));
}

/**
 * A list call's `limit`: proto3 sends 0 for unset, which is the default page. A refusal says so,
 * in the words REST's refusal uses for the range, the same for every list call.
 */
export function pageLimit(max: number, fallback: number): z.ZodType<number> {
  return z.number().refine((value) => Number.isInteger(value) && value >= 0 && value <= max, `must be a whole number from 1 to ${max}, or 0 (unset) for ${fallback}`);
}
