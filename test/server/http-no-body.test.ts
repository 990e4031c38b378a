import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { test } from 'node:test';
import { ADMIN_TOKEN } from './helpers/test-server.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from '../rollout-api/helpers/rollout-server.ts';

/**
 * A REST route that declares no body refuses one with a one-line 400 naming where its input goes,
 * rather than answering 200 with the body dropped (`POST /rollouts/ID/abort` with
 * `{"reason": "INC-42"}` aborted without the reason). No body, `Content-Length: 0`, an empty chunked
 * body and an empty JSON object (what the dashboard and the demo send) are no body; GET and HEAD,
 * and the routes that take bodies, are as before.
 */

/** A request with a chunked body (no Content-Length), answered as {status, json}. */
function chunked(s: RolloutTestServer, method: string, path: string, chunks: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${s.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

test('rollout commands (and other routes without a body) refuse a body; no body, Content-Length 0, an empty chunked body or {} still work', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 25 }, { pause: {} }, { pause: {} }, { pause: {} }, { pause: {} }, { pause: {} }, { setWeight: 100 }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 1);
  const phase = async () => ((await (await s.request('GET', `/api/rollouts/${id}`)).json()) as { phase: string }).phase;
  const refusal = (message: string) => ({ error: { code: 'bad_request', message } });

  // The reviewer's request: a JSON body on abort.
  const abort = await s.request('POST', `/api/rollouts/${id}/abort`, { body: '{"reason":"INC-42","bogus":1}' });
  assert.equal(abort.status, 400);
  assert.deepEqual(await abort.json(), refusal('body: this route (POST /api/rollouts/:id/abort) takes no body; send the reason as ?reason='));
  assert.equal(await phase(), 'Paused', 'not aborted');
  const promote = await s.request('POST', `/api/rollouts/${id}/promote`, { body: '{"step":true}' });
  assert.equal(promote.status, 400);
  assert.deepEqual(await promote.json(), refusal('body: this route (POST /api/rollouts/:id/promote) takes no body; send its parameters in the query (?step=, ?fromStepIndex=)'));
  const resume = await s.request('POST', `/api/rollouts/${id}/resume`, { body: 'resume please', contentType: 'text/plain' });
  assert.equal(resume.status, 400);
  assert.deepEqual(await resume.json(), refusal('body: this route (POST /api/rollouts/:id/resume) takes no body; send the pausedSince as ?pausedSince='));
  const big = await s.request('POST', `/api/rollouts/${id}/resume`, { body: JSON.stringify({ note: 'x'.repeat(100_000) }) });
  assert.equal(big.status, 400);
  const streamed = await chunked(s, 'POST', `/api/rollouts/${id}/abort`, ['{"reason":', '"INC-42"}']);
  assert.equal(streamed.status, 400, streamed.body);
  assert.deepEqual(JSON.parse(streamed.body), refusal('body: this route (POST /api/rollouts/:id/abort) takes no body; send the reason as ?reason='));
  assert.equal(await phase(), 'Paused', 'still not aborted or resumed');

  // Another route without a body: clearing an alias with a body clears nothing.
  assert.equal((await s.request('PUT', '/api/models/wine/aliases/candidate', { json: { version: '2' } })).status, 200, 'a JSON route takes its body');
  const clear = await s.request('DELETE', '/api/models/wine/aliases/candidate', { body: '{"version":"2"}' });
  assert.equal(clear.status, 400);
  assert.deepEqual(await clear.json(), refusal('body: this route (DELETE /api/models/:name/aliases/:alias) takes no body'));
  assert.equal((await s.request('GET', '/api/models/wine/versions/candidate')).status, 200, 'the alias is still there');

  // No body in any of its forms: each resume moves on to the next pause step (no body,
  // Content-Length: 0, {} as the dashboard sends it, an empty chunked body), then an abort with
  // white space around {} and the reason in the query.
  const atStep = async (stepIndex: number) => waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === stepIndex);
  const noBody = await s.request('POST', `/api/rollouts/${id}/resume`);
  assert.equal(noBody.status, 200, await noBody.clone().text());
  await atStep(2);
  const empty = await s.request('POST', `/api/rollouts/${id}/resume`, { body: '' });
  assert.equal(empty.status, 200, await empty.clone().text());
  await atStep(3);
  const dashboard = await s.request('POST', `/api/rollouts/${id}/resume`, { body: JSON.stringify({}) });
  assert.equal(dashboard.status, 200, await dashboard.clone().text());
  await atStep(4);
  const emptyChunked = await chunked(s, 'POST', `/api/rollouts/${id}/resume`, []);
  assert.equal(emptyChunked.status, 200, emptyChunked.body);
  await atStep(5);
  const withReason = await s.request('POST', `/api/rollouts/${id}/abort?reason=INC-42`, { body: ' { }\n' });
  assert.equal(withReason.status, 200, await withReason.clone().text());
  const aborted = await waitForRollout(s.request, id, (v) => v.phase === 'Aborted');
  assert.match(aborted.outcome.reason, /INC-42/);

  // GET and HEAD as before.
  assert.equal((await s.request('GET', `/api/rollouts/${id}`)).status, 200);
  assert.equal((await s.request('HEAD', `/api/rollouts/${id}`)).status, 200);
  assert.equal((await s.request('GET', '/api/rollouts')).status, 200);
});
