import type { ZodError } from 'zod';

/**
 * One line naming every bad field of a request: `body.options.epochs: expected number, received
 * string; body.colour: unknown field`.
 */
export function describeIssues(error: ZodError, root: string): string {
  const lines: string[] = [];
  for (const issue of error.issues) {
    const path = [root, ...issue.path.map(String)].join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) lines.push(`${path}.${key}: unknown field`);
    } else if (issue.code === 'invalid_key') {
      // A record key broke its rule: say which rule, not zod's generic "Invalid key in record".
      lines.push(`${path}: ${issue.issues.map((inner) => inner.message).join('; ')}`);
    } else {
      lines.push(`${path}: ${issue.message}`);
    }
  }
  return lines.join('; ');
}
