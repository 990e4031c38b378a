import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { status } from '@grpc/grpc-js';
import { parseDataset } from '../../shared/data/dataset.ts';
import { splitDataset } from '../../shared/data/split.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { describeIssues } from '../../server/app/describe-issues.ts';
import { PruneOptionsSchema } from '../../server/pruning/options.ts';
import { assertLearnable } from '../../server/pruning/standardization.ts';
import { asServiceError } from '../../server/app/service-error.ts';
import { JobDataCheckPool } from '../../server/jobs/job-data-check-pool.ts';
import type { JobDataCheckInput } from '../../server/jobs/job-data-check.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';

const TINY_OPTIONS = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };

const made = new Map<number, string>();

/** A valid classification CSV of `rows` rows (8 features, labels 0-2): 210,000 rows are about 12 MB. Made once per size. */
function bigCsv(rows: number): string {
  let csv = made.get(rows);
  if (csv === undefined) made.set(rows, (csv = makeCsv(rows)));
  return csv;
}

function makeCsv(rows: number): string {
  const lines = ['a,b,c,d,e,f,g,h,label'];
  for (let i = 0; i < rows; i++) {
    const cells: string[] = [];
    for (let k = 1; k <= 8; k++) cells.push((((i * 7919 + k * 104729) % 100_000) / 1000).toFixed(3));
    lines.push(`${cells.join(',')},${i % 3}`);
  }
  return `${lines.join('\n')}\n`;
}

function smallCsv(rows = 40): string {
  return bigCsv(rows);
}

function checkInput(csvText: string, overrides: Partial<JobDataCheckInput> = {}): JobDataCheckInput {
  return { csvText, source: 'body.data.csv', label: 'label', options: undefined, optionsField: 'body.options', ...overrides };
}

/** Whether the server has taken a submission up (its body read, its data check next), by wrapping startPrune. */
function watchSubmissions(server: TestServer): { readonly started: boolean } {
  const { jobs } = server.server.ctx;
  const startPrune = jobs.startPrune.bind(jobs);
  const seen = { started: false };
  jobs.startPrune = (...args) => {
    seen.started = true;
    return startPrune(...args);
  };
  return seen;
}

test('while a 12 MB CSV is checked, /healthz keeps answering: many answers arrive between the server taking the submission up and answering it', async (t) => {
  const server = (await startTestServer(t))!;
  const submission = watchSubmissions(server);
  const csv = bigCsv(210_000);
  assert.ok(csv.length > 11.5e6 && csv.length < 16 * 1024 * 1024, `${csv.length} characters`);

  let answered = false;
  const submitted = server
    .request('POST', '/api/jobs/prune', { json: { name: 'big', label: 'label', data: { csv }, options: TINY_OPTIONS } })
    .finally(() => (answered = true));
  let duringCheck = 0;
  let longestGapMs = 0;
  let last = performance.now();
  while (!answered) {
    // Once more when the pooled keep-alive connection was closed by the server just as it was reused
    // (its idle timer ran late, after the body parse held the event loop): a new connection answers.
    const health = await fetch(`${server.baseUrl}/healthz`).catch(() => fetch(`${server.baseUrl}/healthz`));
    await health.arrayBuffer();
    assert.equal(health.status, 200);
    const now = performance.now();
    if (submission.started && !answered) {
      duringCheck++;
      longestGapMs = Math.max(longestGapMs, now - last);
    }
    last = now;
    // A poll every 10 ms is plenty to see a stall of seconds, and leaves the CPU to the check.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const response = await submitted;
  const job = (await response.json()) as any;
  assert.equal(response.status, 202, JSON.stringify(job));
  const stored = (await server.server.ctx.store.jobs.get(job.id))!;
  const request = stored.request as any;
  assert.deepEqual([request.task, request.data, request.options.task, request.options.units], ['classification', { csv: `${csv.length} characters` }, 'classification', 16]);
  // Training 210,000 rows is not this test's business.
  assert.equal((await server.request('POST', `/api/jobs/${job.id}/cancel`)).status, 200);
  t.diagnostic(`/healthz answered ${duringCheck} times during the check; longest gap ${longestGapMs.toFixed(0)} ms`);
  // Blocked by the parse, the event loop lets one /healthz through (at most two) before the submission's answer.
  assert.ok(duringCheck >= 5, `/healthz answered only ${duringCheck} times while the server checked the submission`);
});

/** What the server answered before data checks moved to a worker: the check as it ran on the event loop. */
function checkedOnTheEventLoop(csv: string, label: string, options: Record<string, unknown> | undefined, source: string, optionsField: string): string {
  try {
    const dataset = parseDataset(csv, { label }, source);
    const parsed = PruneOptionsSchema.safeParse({ ...(options ?? {}), task: dataset.task });
    if (!parsed.success) return describeIssues(parsed.error, optionsField);
    const { train } = splitDataset(dataset, parsed.data.seed, { validation: parsed.data.validationFraction, test: parsed.data.testFraction });
    assertLearnable(train.x, train.y, dataset.task, dataset.featureNames, dataset.labelName);
  } catch (error) {
    return errorMessage(error);
  }
  return 'accepted';
}

test('a bad CSV gets the same 400 as before over REST and gRPC (the data, then too few rows for the splits its options ask, then nothing to learn), and stores nothing', async (t) => {
  const server = (await startTestServer(t))!;
  const cases: { csv: string; label: string; options?: Record<string, unknown> }[] = [
    { csv: 'a,label\n1,0\n2,x\nfoo,1\n', label: 'label' },
    { csv: 'a,b\n1,2\n', label: 'nope' },
    { csv: 'a,label\n1,0\n2,1\n3,0\n4,1\n', label: 'label' },
    { csv: smallCsv(), label: 'label', options: { testFraction: 0.01 } },
    { csv: '\uFFFD\uFFFDa,b\n1,2\n', label: 'b' },
    // A regression label whose spread no model can learn (it shipped predictions 1e31 times its size).
    { csv: ['a,t', ...Array.from({ length: 60 }, (_, i) => `${i},${(1 + (i % 7)) * 1e-34}`)].join('\n'), label: 't' },
  ];
  const grpc = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => grpc.close());
  for (const { csv, label, options } of cases) {
    const rest = checkedOnTheEventLoop(csv, label, options, 'body.data.csv', 'body.options');
    assert.notEqual(rest, 'accepted', csv.slice(0, 40));
    if (label === 't') assert.match(rest, /^the regression label "t" varies too little to standardize/);
    const response = await server.request('POST', '/api/jobs/prune', { json: { name: 'bad', label, data: { csv }, ...(options ? { options } : {}) } });
    assert.deepEqual([response.status, await response.json()], [400, { error: { code: 'bad_request', message: rest } }]);
    const grpcMessage = checkedOnTheEventLoop(csv, label, options, 'csv', 'options_json');
    await assert.rejects(
      grpc.call('StartPrune', { name: 'bad', label, csv, ...(options ? { options_json: JSON.stringify(options) } : {}) }),
      (error: any) => error.code === status.INVALID_ARGUMENT && error.details === grpcMessage,
    );
  }
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, []);
});

test("an option the data's task ignores (a loss tolerance for regression data, an MSE tolerance for classification) is a 400 over REST and gRPC, not dropped; the same option for its own task is accepted", async (t) => {
  const server = (await startTestServer(t))!;
  const grpc = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => grpc.close());
  const regression = ['x,y', ...Array.from({ length: 80 }, (_, i) => `${i},${(i * 37) % 11}`)].join('\n');
  const cases = [
    { csv: regression, label: 'y', option: 'toleranceLossFraction', expect: 'applies to classification only, and this data set is a regression one: its tolerance is toleranceMseFraction, a fraction of the MSE' },
    { csv: regression, label: 'y', option: 'toleranceAccuracyPoints', expect: 'applies to classification only, and this data set is a regression one: its tolerance is toleranceMseFraction, a fraction of the MSE' },
    { csv: smallCsv(60), label: 'label', option: 'toleranceMseFraction', expect: 'applies to regression only, and this data set is a classification one: its tolerances are toleranceAccuracyPoints and toleranceLossFraction' },
  ];
  for (const { csv, label, option, expect } of cases) {
    const options = { ...TINY_OPTIONS, [option]: 0.1 };
    const response = await server.request('POST', '/api/jobs/prune', { json: { name: 'task-options', label, data: { csv }, options } });
    assert.deepEqual([response.status, await response.json()], [400, { error: { code: 'bad_request', message: `body.options.${option}: ${expect}` } }]);
    await assert.rejects(grpc.call('StartPrune', { name: 'task-options', label, csv, options_json: JSON.stringify(options) }), (error: any) => {
      assert.deepEqual([error.code, error.details], [status.INVALID_ARGUMENT, `options_json.${option}: ${expect}`]);
      return true;
    });
  }
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, []);
  // Given for its own task, the option is taken (and the defaults of the other task's options never count as given).
  const accepted = await server.request('POST', '/api/jobs/prune', { json: { name: 'task-options', label: 'y', data: { csv: regression }, options: { ...TINY_OPTIONS, toleranceMseFraction: 0.1 } } });
  const job = (await accepted.json()) as any;
  assert.equal(accepted.status, 202, JSON.stringify(job));
  assert.equal(((await server.server.ctx.store.jobs.get(job.id))!.request as any).options.toleranceMseFraction, 0.1);
  assert.equal((await server.request('POST', `/api/jobs/${job.id}/cancel`)).status, 200);
});

test('20 checks at once run on at most 2 worker threads, each getting its own answer', async (t) => {
  const pool = new JobDataCheckPool({ threads: 2, maxWaiting: 18 });
  t.after(() => pool.stop());
  const good = smallCsv(60);
  const bad = good.replace(/\n(\d+\.\d+),/, '\n$1x,');
  const inline = (() => {
    try {
      parseDataset(bad, { label: 'label' }, 'body.data.csv');
    } catch (error) {
      return errorMessage(error);
    }
    assert.fail('the bad CSV parses');
  })();
  const checks = Array.from({ length: 20 }, (_, i) => pool.check(checkInput(i % 2 === 0 ? good : bad, { options: { seed: i } })));
  assert.equal(pool.threads, 2, 'threads started for 20 checks');
  const results = await Promise.allSettled(checks);
  results.forEach((result, i) => {
    if (i % 2 === 0) {
      assert.equal(result.status, 'fulfilled', String((result as PromiseRejectedResult).reason));
      assert.deepEqual([result.value.task, result.value.options.seed], ['classification', i]);
    } else {
      assert.equal(result.status, 'rejected');
      assert.ok(result.reason instanceof UserError && asServiceError(result.reason)?.code === 'bad_request');
      assert.equal(result.reason.message, inline);
    }
  });
  assert.ok(pool.threads <= 2);
});

test('a check beyond the waiting limit is refused at once (429), not queued holding its data; the pool takes checks again once the queue drains', async (t) => {
  const pool = new JobDataCheckPool({ threads: 1, maxWaiting: 2 });
  t.after(() => pool.stop());
  const csv = smallCsv(60);
  // One runs, two wait, the fourth is refused.
  const checks = Array.from({ length: 4 }, (_, i) => pool.check(checkInput(csv, { options: { seed: i } })));
  const results = await Promise.allSettled(checks);
  assert.deepEqual(
    results.slice(0, 3).map((result) => (result.status === 'fulfilled' ? result.value.options.seed : String(result.reason))),
    [0, 1, 2],
  );
  const refused = results[3]!;
  assert.equal(refused.status, 'rejected');
  assert.equal(asServiceError(refused.reason)?.code, 'too_many_requests');
  assert.equal(refused.reason.message, '2 submitted data sets are already waiting for their check (--max-queued-jobs); submit the job again in a few seconds');
  assert.equal((await pool.check(checkInput(csv, { options: { seed: 9 } }))).options.seed, 9);
  // With --max-queued-jobs 1, in the singular.
  const one = new JobDataCheckPool({ threads: 1, maxWaiting: 1 });
  t.after(() => one.stop());
  const [, , third] = await Promise.allSettled([0, 1, 2].map((seed) => one.check(checkInput(csv, { options: { seed } }))));
  assert.equal(third!.status === 'rejected' && third.reason.message, '1 submitted data set is already waiting for its check (--max-queued-jobs); submit the job again in a few seconds');
});

test('a check worker that dies (out of memory) fails only its check, with a one-line 500, and the next check gets a new worker', { timeout: 120_000 }, async (t) => {
  const pool = new JobDataCheckPool({ threads: 1, resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 } });
  t.after(() => pool.stop());
  const crashed = await pool.check(checkInput(bigCsv(150_000))).then(
    () => assert.fail('a 9 MB CSV parsed in 24 MB of heap'),
    (error: Error) => error,
  );
  // Not the user's fault: REST answers 500 "internal server error (see the server log)", gRPC INTERNAL.
  assert.equal(asServiceError(crashed), null, crashed.message);
  t.diagnostic(`the check failed with: ${crashed.message}`);
  assert.match(crashed.message, /^the data check worker (failed|exited)/);
  assert.ok(!crashed.message.includes('\n'), crashed.message);
  const next = await pool.check(checkInput(smallCsv()));
  assert.equal(next.task, 'classification');
  assert.equal(pool.threads, 1);
});

test('a check that runs too long is stopped with its worker: a one-line 413 naming the limit, never a request left hanging', { timeout: 120_000 }, async (t) => {
  const pool = new JobDataCheckPool({ threads: 1, timeoutMs: 50 });
  t.after(() => pool.stop());
  // Any check outlasts 50 ms: starting the worker alone takes longer.
  const slow = await pool.check(checkInput(bigCsv(20_000))).then(
    () => assert.fail('a 1 MB CSV checked in 50 ms'),
    (error: Error) => error,
  );
  assert.equal(asServiceError(slow)?.code, 'payload_too_large', slow.message);
  assert.equal(slow.message, 'checking the data set took over 50 ms; stopped: it is more than this server checks in time (use a sample of its rows)');
  // Its worker is ended, not left parsing.
  while (pool.threads > 0) await new Promise((resolve) => setTimeout(resolve, 10));
});

/** The server's data-check pool and how each of its checks ended, by wrapping JobDataCheckPool.prototype.check for the test. */
function watchDataChecks(t: TestContext): { pool: JobDataCheckPool | undefined; readonly outcomes: string[] } {
  const check = Object.getOwnPropertyDescriptor(JobDataCheckPool.prototype, 'check')!;
  const watched = { pool: undefined as JobDataCheckPool | undefined, outcomes: [] as string[] };
  JobDataCheckPool.prototype.check = function (this: JobDataCheckPool, input: JobDataCheckInput) {
    watched.pool = this;
    const checked = (check.value as JobDataCheckPool['check']).call(this, input);
    checked.then(
      () => watched.outcomes.push('checked'),
      (error: unknown) => watched.outcomes.push(`refused: ${errorMessage(error)}`),
    );
    return checked;
  };
  t.after(() => Object.defineProperty(JobDataCheckPool.prototype, 'check', check));
  return watched;
}

test('a server shutting down during a 12 MB check ends the check worker: the submission is refused (503), nothing is stored, the stop does not wait for the parse', { timeout: 120_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const submission = watchSubmissions(server);
  const checks = watchDataChecks(t);
  const csv = bigCsv(210_000);
  const submitted = server.request('POST', '/api/jobs/prune', { json: { name: 'big', label: 'label', data: { csv }, options: TINY_OPTIONS } });
  while (!submission.started || checks.pool?.threads !== 1) await new Promise((resolve) => setTimeout(resolve, 10));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(checks.outcomes, [], 'the check is still running when the server stops');
  const stopping = performance.now();
  await server.server.ctx.jobs.stop();
  const stopMs = performance.now() - stopping;
  t.diagnostic(`jobs.stop() took ${stopMs.toFixed(0)} ms`);
  // The worker was ended mid-parse, not waited for: the check was refused, never finished, and
  // once stop() resolves no check thread is left.
  assert.deepEqual(checks.outcomes, ['refused: the server is shutting down; submit the job again once it is back']);
  assert.equal(checks.pool.threads, 0, 'a check thread outlived the stop');
  // Ending a worker takes milliseconds here; parsing 12 MB takes seconds (a wide margin for a loaded machine).
  assert.ok(stopMs < 5000, `jobs.stop() took ${stopMs.toFixed(0)} ms`);
  const response = await submitted;
  const body = (await response.json()) as any;
  assert.equal(response.status, 503, JSON.stringify(body));
  assert.equal(body.error.message, 'the server is shutting down; submit the job again once it is back');
  assert.equal(body.error.code, 'retry_later', 'the same submission may work once the server is back (the CLI exits 5)');
  assert.deepEqual(await server.server.ctx.store.jobs.list(), []);
});
