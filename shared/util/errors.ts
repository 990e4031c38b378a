import type { ZodError } from 'zod';

/**
 * An error caused by what the user gave us (a flag, a file, a request body).
 * The CLI prints its message on one line and exits with `exitCode` (2 by default);
 * APIs map it to a 4xx. It never carries a stack trace to the user.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UserError';
    this.exitCode = options.exitCode ?? 2;
  }
}

/**
 * Runs `work`; a UserError it throws comes back with `flag: ` before its message, so a file's
 * problem (`cannot read public key K: no such file or directory`) names the flag it came from too.
 */
export async function underFlag<T>(flag: string, work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw error instanceof UserError ? new UserError(`${flag}: ${error.message}`, { exitCode: error.exitCode, cause: error }) : error;
  }
}

/**
 * What is wrong with one field, in words for the user: a record key that broke its rule says
 * which rule (not zod's generic "Invalid key in record"), and a field that was not sent at all is
 * `required (string)` (not "Invalid input: expected string, received undefined").
 */
export function zodIssueMessage(issue: ZodError['issues'][number]): string {
  if (issue.code === 'invalid_key') return issue.issues.map((inner) => inner.message).join('; ');
  if (issue.code === 'invalid_type' && / received undefined$/.test(issue.message)) return `required (${issue.expected})`;
  // A version or a label value is text, even when it reads as a number (rollout specs add a YAML hint).
  const received = issue.code === 'invalid_type' && issue.message.startsWith('Invalid input: ') ? / received (\w+)$/.exec(issue.message)?.[1] : undefined;
  // A fraction where a whole number belongs is a number all the same: "must be a whole number", not "…, not a number".
  if (received === 'number' && issue.code === 'invalid_type' && issue.expected === 'int') return 'must be a whole number';
  if (received !== undefined && issue.code === 'invalid_type' && issue.expected in TYPE_WORDS) return `must be ${TYPE_WORDS[issue.expected]}, not ${TYPE_WORDS[received] ?? received}`;
  // zod's own wording for a bound or a choice ("Too big: expected number to be <=16"), in the
  // words every other message uses; a message the schema wrote itself is kept.
  if (issue.code === 'invalid_value' && issue.message.startsWith('Invalid option: ')) return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
  if ((issue.code === 'too_big' || issue.code === 'too_small') && /^Too (big|small): /.test(issue.message)) return boundMessage(issue);
  // Only zod's own words ("Invalid input"): a union given a message of its own keeps it.
  if (issue.code === 'invalid_union' && issue.message === 'Invalid input') return unionTypeMessage(issue) ?? issue.message;
  return issue.message;
}

/**
 * A value of none of a union's types ("a string or a number"): "must be a string or a number, not
 * a boolean", where zod says only "Invalid input". Undefined for a union whose members failed on
 * more than the value's type (their own messages say more).
 */
function unionTypeMessage(issue: Extract<ZodError['issues'][number], { code: 'invalid_union' }>): string | undefined {
  const members = issue.errors.map((issues) => (issues.length === 1 && issues[0]!.code === 'invalid_type' && issues[0]!.path.length === 0 ? issues[0]! : undefined));
  if (members.length === 0 || members.some((member) => member === undefined || !((member as { expected: string }).expected in TYPE_WORDS))) return undefined;
  const received = / received (\w+)$/.exec(members[0]!.message)?.[1];
  if (received === undefined) return undefined;
  if (received === 'undefined') return `required (${[...new Set(members.map((member) => (member as { expected: string }).expected))].join(' or ')})`;
  const expected = [...new Set(members.map((member) => TYPE_WORDS[(member as { expected: string }).expected]!))];
  const listed = expected.length === 1 ? expected[0]! : `${expected.slice(0, -1).join(', ')} or ${expected.at(-1)!}`;
  return `must be ${listed}, not ${TYPE_WORDS[received] ?? received}`;
}

/** zod's type names in words ("must be a number, not a string"). */
const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'a boolean',
  object: 'an object',
  record: 'an object',
  array: 'a list',
  null: 'null',
  NaN: 'NaN',
};

type BoundIssue = Extract<ZodError['issues'][number], { code: 'too_big' | 'too_small' }>;

/** "must be at most 16", "must be at least 1 character", "must hold at most 64 items". */
function boundMessage(issue: BoundIssue): string {
  const big = issue.code === 'too_big';
  const bound = Number(big ? issue.maximum : issue.minimum);
  const inclusive = issue.inclusive !== false;
  const word = big ? (inclusive ? 'at most' : 'less than') : inclusive ? 'at least' : 'more than';
  const plural = (noun: string) => `${noun}${bound === 1 ? '' : 's'}`;
  if (issue.origin === 'string') return `must be ${word} ${bound} ${plural('character')} long`;
  if (issue.origin === 'array' || issue.origin === 'set') return `must hold ${word} ${bound} ${plural('item')}`;
  return `must be ${word} ${bound}`;
}

/** One line naming each bad field: `--epsilon: must be in (0, 1)`. */
export function describeZodError(error: ZodError, prefix = '', whole = 'input'): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.length > 0 ? `${prefix}${issue.path.join('.')}` : prefix.replace(/\.$/, '') || whole;
      return `${path}: ${zodIssueMessage(issue)}`;
    })
    .join('; ');
}

/**
 * Text quoted into a one-line error message: control characters (line breaks, a binary file's
 * bytes) escaped as `\n` / `\u0001`, and at most `max` characters. A parser's message can quote a
 * whole field of the input (csv-parse does), megabytes of it.
 */
export function oneLineMessage(text: string, max = 200): string {
  const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A failed system call (fs, net): node's errors with a `code` such as EACCES and the `syscall`. */
export function isSystemError(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string' && typeof (error as NodeJS.ErrnoException).syscall === 'string';
}

/** A system error on one line, naming its path when node's message does not (`EISDIR: …, read`). */
export function describeSystemError(error: NodeJS.ErrnoException): string {
  return error.path && !error.message.includes(error.path) ? `${error.message} (${error.path})` : error.message;
}
