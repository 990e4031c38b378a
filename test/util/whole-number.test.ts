import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { PruneOptionsSchema } from '../../server/pruning/options.ts';
import { zodIssueMessage } from '../../shared/util/errors.ts';
import { wholeNumber } from '../../shared/util/whole-number.ts';

const messages = (result: { error?: { issues: Parameters<typeof zodIssueMessage>[0][] } }) => result.error?.issues.map(zodIssueMessage) ?? [];

// zod's .int() also checks ±(2^53 − 1): 1e20 failed two bounds, and every path that reports all of
// a value's issues (server flags, job options over REST and gRPC) named 9007199254740991 too.
test('a whole number beyond its bounds names its own bound, once; a fraction is not a whole number', () => {
  assert.deepEqual(messages(wholeNumber(0, 1000).safeParse(1e20)), ['must be at most 1000']);
  assert.deepEqual(messages(wholeNumber(0, 1000).safeParse(-1e20)), ['must be at least 0']);
  assert.deepEqual(messages(wholeNumber(0, 1000).safeParse(2.5)), ['must be a whole number']);
  assert.deepEqual(messages(wholeNumber(0, 1000).safeParse(Number.NaN)), ['must be a number, not NaN']);
  assert.equal(wholeNumber(0, 1000).parse(1000), 1000);
  assert.deepEqual(messages(PruneOptionsSchema.safeParse({ units: 1e20, seed: 1e20 })), ['must be at most 4096', 'must be at most 2147483647']);
  assert.deepEqual(messages(PruneOptionsSchema.safeParse({ units: -5000 })), ['must be at least 2'], 'no weight count of -5000 units');
  assert.throws(() => parseServerConfig({ dataDir: '/tmp/unused', httpPort: '1e20', maxConcurrentJobs: '1e20' }), (error: Error) => {
    assert.equal(error.message, '--http-port: must be at most 65535; --max-concurrent-jobs: must be at most 64');
    return true;
  });
});

test('a value of the wrong type is named in words; a fraction where a whole number belongs is "must be a whole number", not "…, not a number"', () => {
  assert.deepEqual(messages(z.int().safeParse(2.5)), ['must be a whole number']);
  assert.deepEqual(messages(z.int().safeParse('3')), ['must be a number, not a string']);
  assert.deepEqual(messages(z.number().safeParse([1])), ['must be a number, not a list']);
  assert.deepEqual(messages(z.object({}).safeParse(null)), ['must be an object, not null']);
  assert.deepEqual(messages(z.string().safeParse(7)), ['must be a string, not a number']);
  // A rollout spec's target.matchLabels: null (it was "Invalid input: expected record, received null").
  assert.deepEqual(messages(z.record(z.string(), z.string()).safeParse(null)), ['must be an object, not null']);
});

// A rollout spec's analysis argument (`value: true`) was refused with zod's bare "Invalid input".
test('a value of none of a union\'s types names them in words; one of a member\'s type that breaks its rule gets that rule\'s message', () => {
  const stringOrNumber = z.union([z.string(), z.number()]);
  assert.deepEqual(messages(stringOrNumber.safeParse(true)), ['must be a string or a number, not a boolean']);
  assert.deepEqual(messages(stringOrNumber.safeParse(null)), ['must be a string or a number, not null']);
  assert.deepEqual(messages(z.union([z.string(), z.number(), z.boolean()]).safeParse([])), ['must be a string, a number or a boolean, not a list']);
  assert.deepEqual(messages(z.union([z.string().min(3), z.number()]).safeParse(true)), ['must be a string or a number, not a boolean']);
  assert.deepEqual(messages(z.union([z.string().min(3), z.number()]).safeParse('ab')), ['must be at least 3 characters long'], 'a string too short is no type mismatch');
  assert.equal(stringOrNumber.parse('0.5'), '0.5');
});

test('a union with a message of its own keeps it; one left out is "required (…)"', () => {
  assert.deepEqual(messages(z.union([z.object({ a: z.string() }), z.object({ b: z.string() })], { error: 'exactly one of {a} or {b}' }).safeParse('x')), ['exactly one of {a} or {b}']);
  assert.deepEqual(messages(z.object({ value: z.union([z.string(), z.number()]) }).safeParse({})), ['required (string or number)']);
});
