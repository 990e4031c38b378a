import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startRolloutServer, waitForRollout } from './helpers/rollout-server.ts';

test('a spec of thousands of steps is a 400 naming steps, nothing stored; 1000 steps that add no device run to the end', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  // Each repeated weight adds no device and completes at once: 5000 of them overflowed the stack
  // when the first step's devices answered, and the rollout stayed at step 1 for ever.
  const steps = (count: number) => [{ setWeight: 100 }, ...Array.from({ length: count - 1 }, () => ({ setWeight: 100 }))];
  const tooMany = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: steps(5000) } });
  assert.equal(tooMany.status, 400);
  assert.equal(((await tooMany.json()) as any).error.message, 'body: invalid rollout spec: steps: must list at most 1000 steps');
  assert.deepEqual(((await (await s.request('GET', '/api/rollouts')).json()) as any).rollouts, []);
  assert.equal(s.fleet.calls.length, 0);

  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: steps(1000) } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  const done = await waitForRollout(s.request, id, (v) => v.phase === 'Completed' && v.pendingActions.length === 0, 30_000);
  assert.equal(done.steps.filter((step: any) => step.status === 'done').length, 1000);
  for (const device of s.fleet.devices.values()) assert.equal(device.active, '2');
});

test('a selector written as a YAML !!omap or !!set is a 400 naming it, not a selector of every device', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const spec = (target: string, pilot: string) => `model: wine\ncandidateVersion: "2"\ntarget: ${target}\nsteps:\n  - selector: ${pilot}\n  - pause: {}\n  - setWeight: 100\n`;
  // Parsed as a Map or a Set, these read as selectors without labels: every device of the model
  // (the target south, which no device is in; the pilot, which would have been every device).
  const south = await s.request('POST', '/api/rollouts', { body: spec('!!omap [{matchLabels: {site: south}}]', '{matchLabels: {site: north}}'), contentType: 'application/yaml' });
  assert.equal(south.status, 400);
  assert.equal(((await south.json()) as any).error.message, 'body: invalid rollout spec: target: a YAML !!omap is not accepted; write a plain mapping or list');
  const pilot = await s.request('POST', '/api/rollouts', { body: spec('{matchLabels: {site: north}}', '!!omap [{matchLabels: {pilot: "true"}}]'), contentType: 'application/yaml' });
  assert.equal(pilot.status, 400);
  assert.equal(((await pilot.json()) as any).error.message, 'body: invalid rollout spec: steps[0].selector: a YAML !!omap is not accepted; write a plain mapping or list');
  const set = await s.request('POST', '/api/rollouts', { body: spec('!!set {site}', '{matchLabels: {site: north}}'), contentType: 'application/yaml' });
  assert.equal(set.status, 400);
  assert.equal(((await set.json()) as any).error.message, 'body: invalid rollout spec: target: a YAML !!set is not accepted; write a plain mapping or list');
  assert.deepEqual(((await (await s.request('GET', '/api/rollouts')).json()) as any).rollouts, []);
  assert.equal(s.fleet.calls.length, 0);
});
