import type { ZodError } from 'zod';
import { zodIssueMessage } from '../../shared/util/errors.ts';

/**
 * One line naming every bad field of a request: `body.options.epochs: expected number, received
 * string; body.colour: unknown field`.
 */
export function describeIssues(error: ZodError, root: string): string {
  const lines: string[] = [];
  for (const issue of error.issues) {
    // Root '' (a gRPC request: its fields are named as the proto names them); the whole message is `request`.
    const path = [root, ...issue.path.map(String)].filter((part, i) => i > 0 || part !== '').join('.') || 'request';
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) lines.push(`${path}.${key}: unknown field`);
    } else {
      lines.push(`${path}: ${zodIssueMessage(issue)}`);
    }
  }
  return lines.join('; ');
}
