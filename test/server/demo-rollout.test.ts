import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decideDemoRollout, inconclusiveOutcome } from '../../server/demo/demo-decision.ts';
import { startRollout } from '../../server/demo/demo-run.ts';
import { DEMO_ANALYSIS_TIMING, demoRolloutSpec } from '../../server/demo/demo-rollout-spec.ts';
import { RestClient } from '../../server/demo/rest-client.ts';
import { parseDuration } from '../../shared/util/duration.ts';
import { misbehavingServer } from '../helpers/misbehaving-http.ts';

test('demo: a rollout start refused while the previous rollout still sends its reverts (409) is tried again; other errors are not', async (t) => {
  let attempts = 0;
  const server = await misbehavingServer((_req, res) => {
    attempts += 1;
    res.setHeader('content-type', 'application/json');
    if (attempts <= 2) {
      res.statusCode = 409;
      res.end(JSON.stringify({ error: { code: 'conflict', message: "model wine's rollout ro-1 is still sending its devices their models (1 pending)" } }));
    } else res.end(JSON.stringify({ id: 'ro-2' }));
  });
  t.after(() => server.close());
  const started = await startRollout(new RestClient(server.url, 'token'), demoRolloutSpec('wine', '3'));
  assert.equal(started.id, 'ro-2');
  assert.equal(attempts, 3);

  const refusing = await misbehavingServer((_req, res) => {
    res.statusCode = 409;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ error: { code: 'conflict', message: 'model wine already has a rollout in progress' } }));
  });
  t.after(() => refusing.close());
  await assert.rejects(startRollout(new RestClient(refusing.url, 'token'), demoRolloutSpec('wine', '3')), /409 model wine already has a rollout/);
});

test('demo --prometheus-url: the first measurement waits for two scrapes of the shipped Prometheus config', async () => {
  const config = await readFile(fileURLToPath(new URL('../../deploy/prometheus/prometheus.yml', import.meta.url)), 'utf8');
  const fleetprune = config.slice(config.indexOf('job_name: fleetprune'));
  const scrapeMs = parseDuration(/scrape_interval: (\S+)/.exec(fleetprune)![1]!)!;
  assert.ok(parseDuration(DEMO_ANALYSIS_TIMING.prometheus.initialDelay)! >= 2 * scrapeMs, `initialDelay ${DEMO_ANALYSIS_TIMING.prometheus.initialDelay}, scrape every ${scrapeMs} ms`);
  const spec = demoRolloutSpec('wine', '3', 'prometheus') as { steps: { analysis?: { metrics: { initialDelay: string }[] } }[] };
  for (const step of spec.steps) for (const metric of step.analysis?.metrics ?? []) assert.equal(metric.initialDelay, DEMO_ANALYSIS_TIMING.prometheus.initialDelay);
});

test('demo: a pilot it rolls back as inconclusive (iris) is summed up without the advice to resume or promote that the pause gave', () => {
  // The pause message of an inconclusive analysis, as the rollout state machine words it.
  const paused =
    'analysis inconclusive at step 2; waiting for a human (resume re-runs the analysis, promote --step skips it, promote skips every remaining step, rollback reverts): ' +
    'accuracy: 1 inconclusive measurement > inconclusiveLimit 0: accuracy: candidate accuracy 85.71 points vs baseline 100 points − 0.5 points = 99.50 on 6 devices (Wilcoxon signed-rank W+=9 p=0.3438, Mann-Whitney U=16 p=0.4011; p=0.6875 for both): outside tolerance but not significant at confidence 0.95';
  assert.equal(
    inconclusiveOutcome(paused),
    'inconclusive (analysis inconclusive at step 2: accuracy: 1 inconclusive measurement > inconclusiveLimit 0: accuracy: candidate accuracy 85.71 points vs baseline 100 points − 0.5 points = 99.50 on 6 devices (Wilcoxon signed-rank W+=9 p=0.3438, Mann-Whitney U=16 p=0.4011; p=0.6875 for both): outside tolerance but not significant at confidence 0.95); rolled back by the demo',
  );
});

/**
 * A rollout API with the phases a test scripts: each GET answers the script's current state;
 * POST resume and POST rollback move it to the next one.
 */
async function scriptedRollout(t: TestContext, states: { phase: string; pause?: string; reason?: string }[]) {
  let at = 0;
  const server = await misbehavingServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.method === 'POST') at = Math.min(at + 1, states.length - 1);
    const state = states[at]!;
    const terminal = !['Progressing', 'Paused'].includes(state.phase);
    res.end(JSON.stringify({ id: 'ro-1', phase: state.phase, terminal, revision: at + 1, pause: state.pause ? { reason: state.reason ?? 'inconclusive', since: '', until: null, message: state.pause } : null }));
  });
  t.after(() => server.close());
  return { api: new RestClient(server.url, 'token'), posts: () => server.requests.filter((request) => request.startsWith('POST')) };
}

const TOO_FEW = 'analysis inconclusive at step 2; waiting for a human (resume re-runs the analysis, promote --step skips it, promote skips every remaining step, rollback reverts): accuracy: 1 inconclusive measurement > inconclusiveLimit 0: accuracy: too few samples: 0 devices with both candidate and baseline accuracy reports (0 candidate, 0 baseline) < minSamples 4';
const NOT_SIGNIFICANT = 'analysis inconclusive at step 2; waiting for a human (resume re-runs the analysis, promote --step skips it, promote skips every remaining step, rollback reverts): accuracy: 1 inconclusive measurement > inconclusiveLimit 0: accuracy: candidate accuracy 85.71 points vs baseline 100 points − 0.5 points = 99.50 on 6 devices (Wilcoxon signed-rank W+=9 p=0.3438, Mann-Whitney U=16 p=0.4011; p=0.6875 for both): outside tolerance but not significant at confidence 0.95';
const FAST = { resumeAfterMs: 10, pollMs: 10, timeoutMs: 5000 };

test('demo: a pilot paused because too few devices had reported yet (a busy machine) is resumed, not rolled back, and goes on to be decided', async (t) => {
  const { api, posts } = await scriptedRollout(t, [{ phase: 'Paused', pause: TOO_FEW }, { phase: 'Paused', pause: TOO_FEW }, { phase: 'Completed' }]);
  const said: string[] = [];
  const decision = await decideDemoRollout(api, 'ro-1', (line) => said.push(line), FAST);
  assert.deepEqual([decision.detail.phase, decision.inconclusive], ['Completed', '']);
  assert.deepEqual(posts(), ['POST /api/rollouts/ro-1/resume', 'POST /api/rollouts/ro-1/resume']);
  assert.match(said[0]!, /too few device reports yet; resuming/);
});

test('demo: a pilot paused on evidence that is not significant is rolled back at once; one still without reports after the resumes is rolled back too', async (t) => {
  const significant = await scriptedRollout(t, [{ phase: 'Paused', pause: NOT_SIGNIFICANT }, { phase: 'RolledBack' }]);
  const decided = await decideDemoRollout(significant.api, 'ro-1', () => {}, FAST);
  assert.equal(decided.detail.phase, 'RolledBack');
  assert.equal(decided.inconclusive, inconclusiveOutcome(NOT_SIGNIFICANT));
  assert.deepEqual(significant.posts(), [`POST /api/rollouts/ro-1/rollback?reason=${encodeURIComponent('inconclusive pilot (demo operator)')}`]);

  const silent = await scriptedRollout(t, [{ phase: 'Paused', pause: TOO_FEW }, { phase: 'Paused', pause: TOO_FEW }, { phase: 'Paused', pause: TOO_FEW }, { phase: 'RolledBack' }]);
  const gaveUp = await decideDemoRollout(silent.api, 'ro-1', () => {}, { ...FAST, maxResumes: 2 });
  assert.equal(gaveUp.detail.phase, 'RolledBack');
  assert.match(gaveUp.inconclusive, /too few samples/);
  assert.deepEqual(silent.posts().map((request) => request.split('?')[0]), ['POST /api/rollouts/ro-1/resume', 'POST /api/rollouts/ro-1/resume', 'POST /api/rollouts/ro-1/rollback']);
});

test('demo: a pilot paused because none of its devices could be reached is rolled back at once, saying so (it waited 240 s and threw)', async (t) => {
  const message = "no device of step 1's cohort received the candidate (6 unreachable); the step goes on when one of them has it";
  const { api, posts } = await scriptedRollout(t, [{ phase: 'Paused', pause: message, reason: 'unreachable' }, { phase: 'RolledBack' }]);
  const said: string[] = [];
  const decided = await decideDemoRollout(api, 'ro-1', (line) => said.push(line), FAST);
  assert.equal(decided.detail.phase, 'RolledBack');
  assert.equal(decided.inconclusive, `unreachable pilot (${message}); rolled back by the demo`);
  assert.deepEqual(posts(), [`POST /api/rollouts/ro-1/rollback?reason=${encodeURIComponent('unreachable pilot (demo operator)')}`]);
  assert.match(said[0]!, /paused as its pilot is unreachable; rolling it back/);
});
