import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { makeArtifact, makeSigner, pushArtifact, storeSnapshot } from './helpers/artifacts.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

// Integer scores 1-3 over 90 rows: inferred as classes when no task is given.
const SCORES = `a,b,score\n${Array.from({ length: 90 }, (_, i) => `${(i * 0.37) % 1},${(i * 0.61) % 1},${(i % 3) + 1}`).join('\n')}\n`;
/** Classes over the seven features of makeArtifact's classifier, f0..f6, named as its classes (`classes`) or not. */
const sevenFeatures = (classes: readonly string[]) => `f0,f1,f2,f3,f4,f5,f6,score\n${Array.from({ length: 90 }, (_, i) => `${Array.from({ length: 7 }, (_, j) => ((i * (0.37 + j * 0.11)) % 1).toFixed(3)).join(',')},${classes[i % 3]}`).join('\n')}\n`;
const SEVEN = sevenFeatures(['a', 'b', 'c']);
const LONG = { units: 8, layers: 1, epochs: 10_000, patience: 1000, retrainEpochs: 0, epsilons: [0.2], baselines: false };

test('a prune job heeds options.task (REST and gRPC) instead of silently training the inferred task; a contradicting task is a 400 and stores nothing', async (t) => {
  const server = (await startTestServer(t, { config: { maxConcurrentJobs: 1, maxQueuedJobs: 4 } }))!;
  const { store } = server.server.ctx;
  const taskOf = async (id: string) => ((await store.jobs.get(id))!.request as { task: string }).task;

  const rest = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', data: { csv: SCORES }, options: { ...LONG, task: 'regression' } } });
  assert.equal(rest.status, 202, await rest.clone().text());
  assert.equal(await taskOf(((await rest.json()) as any).id), 'regression');

  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  const viaGrpc = await jobs.call('StartPrune', { name: 'scores', label: 'score', csv: SCORES, options_json: JSON.stringify({ ...LONG, task: 'regression' }) });
  assert.equal(await taskOf(viaGrpc.id), 'regression');

  const stored = (await store.jobs.list()).length;
  const contradicting = await server.request('POST', '/api/jobs/prune', {
    json: { name: 'scores', label: 'score', task: 'classification', data: { csv: SCORES }, options: { ...LONG, task: 'regression' } },
  });
  assert.equal(contradicting.status, 400);
  assert.equal(((await contradicting.json()) as any).error.message, "body.options.task: regression contradicts the request's task classification; give one");
  await assert.rejects(
    jobs.call('StartPrune', { name: 'scores', label: 'score', task: 'classification', csv: SCORES, options_json: JSON.stringify({ task: 'regression' }) }),
    (error: any) => error.code === status.INVALID_ARGUMENT && /^options_json\.task: regression contradicts/.test(error.details),
  );
  // Training threads: "auto", 1 or 2, named so over both APIs.
  const threads = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', data: { csv: SCORES }, options: { trainingThreads: 3 } } });
  assert.equal(threads.status, 400);
  assert.equal(((await threads.json()) as any).error.message, 'body.options.trainingThreads: must be "auto", 1 or 2');
  await assert.rejects(
    jobs.call('StartPrune', { name: 'scores', label: 'score', csv: SCORES, options_json: JSON.stringify({ trainingThreads: 'all' }) }),
    (error: any) => error.code === status.INVALID_ARGUMENT && error.details === 'options_json.trainingThreads: must be "auto", 1 or 2',
  );
  // A negative ε is named once (it was also "outside (0, 1) in relative mode", for the same ε); ε 1 in relative mode once too.
  for (const [epsilons, message] of [
    [[-1], 'body.options.epsilons.0: must be above 0 (and below 1 in the default relative mode)'],
    [[0.2, 1], 'body.options.epsilons.1: ε 1 is outside (0, 1) in relative mode'],
  ] as const) {
    const refused = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', data: { csv: SCORES }, options: { epsilons } } });
    assert.equal(refused.status, 400);
    assert.equal(((await refused.json()) as any).error.message, message);
  }
  assert.equal((await store.jobs.list()).length, stored, 'nothing was stored');
});

test("a prune job of another task than its model's latest version is refused at once (409, REST and gRPC), before training; nothing is stored", async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const classifier = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey, name: 'scores' });
  assert.equal((await pushArtifact(server, 'scores', classifier.dir, classifier.manifest)).status, 201);
  const before = await storeSnapshot(server);
  const expected = 'model scores does classification (its latest version scores@1), and this is a regression model: it can replace none of its versions on a device (give it another name)';
  const rest = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', task: 'regression', data: { csv: SCORES }, options: LONG } });
  assert.equal(rest.status, 409, await rest.clone().text());
  assert.equal(((await rest.json()) as any).error.message, expected);
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  await assert.rejects(
    jobs.call('StartPrune', { name: 'scores', label: 'score', csv: SCORES, options_json: JSON.stringify({ ...LONG, task: 'regression' }) }),
    (error: any) => error.code === status.FAILED_PRECONDITION && error.details === expected,
  );
  assert.equal(await storeSnapshot(server), before, 'the store changed');
  // Its own task on other features is refused too (another data set's model under its name), before training.
  const otherFeatures = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', data: { csv: SCORES }, options: LONG } });
  assert.equal(otherFeatures.status, 409, await otherFeatures.clone().text());
  assert.equal(
    ((await otherFeatures.json()) as any).error.message,
    'model scores takes other features (its latest version scores@1): 7 there, 2 here; this one lacks "f0", "f1", "f2" and 4 more and adds "a", "b"; devices read a version\'s features by name and /v1/predict callers send them in its order, so this one can replace none of its versions (give it another name)',
  );
  assert.equal(await storeSnapshot(server), before, 'the store changed');
  // Its own features with other classes are refused too, before training.
  assert.deepEqual(classifier.manifest.labels, ['a', 'b', 'c']);
  const otherClasses = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', data: { csv: sevenFeatures(['a', 'b', 'z']) }, options: LONG } });
  assert.equal(otherClasses.status, 409, await otherClasses.clone().text());
  assert.match(((await otherClasses.json()) as any).error.message, /^model scores predicts other classes \(its latest version scores@1\): 3 there, 3 here; this one lacks "c" and adds "z"; /);
  assert.equal(await storeSnapshot(server), before, 'the store changed');
  // Its own task on its own features and classes is taken.
  assert.deepEqual(classifier.manifest.features, SEVEN.split('\n')[0]!.split(',').slice(0, -1));
  const same = await server.request('POST', '/api/jobs/prune', { json: { name: 'scores', label: 'score', data: { csv: SEVEN }, options: LONG } });
  assert.equal(same.status, 202, await same.clone().text());
});

for (const maxConcurrentJobs of [1, 2]) test(`two jobs submitted at once under one name with other features (${maxConcurrentJobs} worker${maxConcurrentJobs === 1 ? '' : 's'}): the second waits for the first, and fails when it leaves the queue (the first registered meanwhile), before any training`, async (t) => {
  const server = (await startTestServer(t, { config: { maxConcurrentJobs, maxQueuedJobs: 4 } }))!;
  const { store } = server.server.ctx;
  const quick = { units: 8, layers: 1, epochs: 5, retrainEpochs: 1, epsilons: [0.3], baselines: false, seed: 1 };
  const submit = async (csv: string) => {
    const response = await server.request('POST', '/api/jobs/prune', { json: { name: 'race', label: 'score', data: { csv }, options: quick } });
    assert.equal(response.status, 202, await response.clone().text());
    return ((await response.json()) as { id: string }).id;
  };
  // Both checked against a registry without "race": both accepted.
  const [first, second] = [await submit(SEVEN), await submit(SCORES)];
  const ended = async (id: string) => {
    for (;;) {
      const job = (await store.jobs.get(id))!;
      if (['succeeded', 'failed', 'cancelled'].includes(job.state)) return job;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  assert.equal((await ended(first)).state, 'succeeded');
  const refused = await ended(second);
  assert.equal(refused.state, 'failed');
  assert.match(refused.error ?? '', /^model race takes other features \(its latest version race@\d+\): 7 there, 2 here;/);
  assert.equal(refused.progress, null, 'it never trained: no progress was recorded');
});
