import { randomBytes } from 'node:crypto';

/** A fresh message id (report, assignment, command): 22 url-safe base64 characters, 128 random bits. */
export function newMessageId(): string {
  return randomBytes(16).toString('base64url');
}
