import assert from 'node:assert/strict';

/** The JSON error body every REST refusal carries (server/http/send-error.ts). */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** Asserts `response` is a JSON refusal with `status`, error `code`, and a message matching `messagePattern`. */
export async function expectError(response: Response, status: number, code: string, messagePattern: RegExp): Promise<void> {
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await response.json()) as ErrorBody;
  assert.equal(response.status, status, JSON.stringify(body));
  assert.equal(body.error.code, code);
  assert.match(body.error.message, messagePattern);
}
