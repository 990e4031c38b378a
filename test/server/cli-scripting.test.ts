import assert from 'node:assert/strict';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { tempDir } from '../helpers/cli.ts';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { runCli } from './helpers/run-cli.ts';

/**
 * The CLI's stdout as scripts read it, against a stand-in gRPC server (no training, no rollout
 * controller): `jobs prune --detach` and `rollout start` print the bare id, `rollout watch`
 * prints its events and the summary once on stdout, step numbers count from 1.
 */

const JOB_ID = 'job-0123456789abcdef';
const ROLLOUT_ID = 'ro-0123456789ab';

function rollout(overrides: Record<string, unknown> = {}) {
  return {
    id: ROLLOUT_ID,
    model: 'wine',
    candidate_version: '2',
    previous_production: '1',
    phase: 'Progressing',
    terminal: false,
    step_index: 1,
    step_count: 3,
    step_stage: 'analyzing',
    current_step: 'analysis of accuracy',
    weight: 25,
    devices: { total: 4, candidate: 1, delivered: 1, pending: 0, retrying: 0, unreachable: 0, refused: 0 },
    pause_message: '',
    outcome_status: '',
    outcome_reason: '',
    revision: '7',
    created_at: '2026-03-01T09:00:00.000Z',
    updated_at: '2026-03-01T09:05:00.000Z',
    ...overrides,
  };
}

const FINISHED = rollout({ phase: 'Completed', terminal: true, step_index: 3, step_stage: '', current_step: '', weight: 100, outcome_status: 'production', outcome_reason: 'all steps passed' });

const DECISIONS = [
  { id: 'd1', at: '2026-03-01T09:00:00.000Z', kind: 'step', step_index: 0, verdict: 'started', message: 'step 1/3: set weight 25%', by: '', measurement_json: '' },
  { id: 'd2', at: '2026-03-01T09:01:00.000Z', kind: 'step', step_index: 0, verdict: 'completed', message: 'step 1 completed', by: '', measurement_json: '' },
  { id: 'd3', at: '2026-03-01T09:02:00.000Z', kind: 'step', step_index: 1, verdict: 'started', message: 'step 2/3: analysis of accuracy', by: '', measurement_json: '' },
  // Taken after the last step: the rollout's index is then its step count.
  { id: 'd4', at: '2026-03-01T09:09:00.000Z', kind: 'promotion', step_index: 3, verdict: 'production', message: 'wine 2 is production: all steps passed', by: '', measurement_json: '' },
];

let server: Server;
let connection: string[];

before(async () => {
  const proto = loadFleetpruneProto();
  server = new Server();
  server.addService(proto.Jobs.service, {
    StartPrune: (_call: unknown, done: (error: null, job: object) => void) =>
      done(null, { id: JOB_ID, kind: 'prune', state: 'queued', progress_json: '', result_json: '', error: '', created_at: '', updated_at: '', created_by: 'admin', node: '' }),
  });
  server.addService(proto.Rollouts.service, {
    StartRollout: (_call: unknown, done: (error: null, r: object) => void) => done(null, rollout({ step_index: 0, step_stage: 'acting' })),
    GetRollout: (_call: unknown, done: (error: null, r: object) => void) =>
      done(null, {
        rollout: rollout(),
        detail_json: JSON.stringify({
          steps: [
            { index: 0, description: 'set weight 25%', status: 'done', measurements: 0 },
            { index: 1, description: 'analysis of accuracy', status: 'current', measurements: 2 },
            { index: 2, description: 'set weight 100%', status: 'pending', measurements: 0 },
          ],
          decisions: DECISIONS.map((d) => ({ id: d.id, at: d.at, kind: d.kind, stepIndex: d.step_index, verdict: d.verdict, message: d.message })),
        }),
      }),
    // A rollout that already finished: its log, then its (terminal) state.
    WatchRollout: (call: ServerWritableStream<unknown, unknown>) => {
      for (const decision of DECISIONS) call.write({ decision });
      call.write({ state: FINISHED });
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  connection = ['--server', `127.0.0.1:${port}`, '--token', 'fp_test'];
});

after(() => server.forceShutdown());

test('jobs prune --detach prints the bare job id on stdout, so J=$(...) feeds jobs watch (it printed "job ID")', async () => {
  const run = await runCli(['jobs', 'prune', '--server-path', 'wine.csv', '--label', 'cultivar', '--detach', ...connection]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, `${JOB_ID}\n`);
  assert.match(run.stderr, new RegExp(`fleetprune jobs watch ${JOB_ID}`));
});

test('rollout start without --watch prints the bare rollout id on stdout (it printed "rollout ID")', async (t) => {
  const spec = join(await tempDir(t), 'spec.yaml');
  await writeFile(spec, 'model: wine\ncandidateVersion: "2"\n');
  const run = await runCli(['rollout', 'start', '-f', spec, ...connection]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, `${ROLLOUT_ID}\n`);
  assert.match(run.stderr, new RegExp(`started rollout ${ROLLOUT_ID} of wine 2; follow it with: fleetprune rollout watch ${ROLLOUT_ID}`));
});

test('rollout watch prints its events on stdout and the summary once, steps counted from 1 and never past the last (events went to stderr, the summary three times, step 4 of 3)', async () => {
  const run = await runCli(['rollout', 'watch', ROLLOUT_ID, ...connection]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, '');
  const lines = run.stdout.trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, 4), [
    '  2026-03-01T09:00:00.000Z  step 1  step  started: step 1/3: set weight 25%',
    '  2026-03-01T09:01:00.000Z  step 1  step  completed: step 1 completed',
    '  2026-03-01T09:02:00.000Z  step 2  step  started: step 2/3: analysis of accuracy',
    '  2026-03-01T09:09:00.000Z  step 3  promotion  production: wine 2 is production: all steps passed',
  ]);
  assert.equal(lines.length, 5, run.stdout);
  assert.equal(lines.filter((line) => line.startsWith(ROLLOUT_ID)).length, 1, run.stdout);
  assert.match(lines[4]!, new RegExp(`^${ROLLOUT_ID}  wine 2  Completed  3 steps  weight 100%`));
});

test('rollout status numbers steps from 1 in its line, its step list and its decision log, never past the last (they said step 2/3, ▶ 1., step 0 and step 4 of 3)', async () => {
  const run = await runCli(['rollout', 'status', ROLLOUT_ID, ...connection]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /step 2\/3 \(analyzing: analysis of accuracy\)/);
  assert.match(run.stdout, /^ {2}✓ 1\. set weight 25%$/m);
  assert.match(run.stdout, /^ {2}▶ 2\. analysis of accuracy \(2 measurements\)$/m);
  assert.match(run.stdout, /^ {2}2026-03-01T09:02:00\.000Z {2}step 2 {2}step {2}started: step 2\/3/m);
  assert.match(run.stdout, /^ {2}2026-03-01T09:09:00\.000Z {2}step 3 {2}promotion {2}production: /m);
  assert.doesNotMatch(run.stdout, /step [04] /);
});
