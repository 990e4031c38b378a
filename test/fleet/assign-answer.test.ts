import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AssignmentPublisher } from '../../server/fleet/assignment-publisher.ts';
import { registerVersion } from '../rollout-api/helpers/rollout-fixtures.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';

/**
 * A direct assignment is sent after it is recorded, outside the turn rollouts take: a second
 * assignment to the same device can be recorded before the first is sent. The device's retained
 * topic then holds the newer one alone (it decides), and each answer still names its own artifact.
 */
test('two direct assignments to one device while the broker is slow: each answer names its own artifact, and the device is sent the newer', async (t) => {
  const base = await startTestServer(t);
  if (!base) return;
  const { server } = base;
  const { store } = server.ctx;
  await registerVersion(store, 'wine', '3', server.ctx.signingKey.privateKey);
  await registerVersion(store, 'wine', '4', server.ctx.signingKey.privateKey);
  const request = (method: string, path: string, json?: unknown) => base.request(method, path, { token: ADMIN_TOKEN, json });
  assert.equal((await request('POST', '/api/devices', { id: 'real-01', labels: {} })).status, 201);
  const original = AssignmentPublisher.prototype.sendRetained;
  const sent: string[] = [];
  AssignmentPublisher.prototype.sendRetained = async function (this: AssignmentPublisher, deviceIds) {
    await new Promise((resolve) => setTimeout(resolve, 300)); // a broker slow to take a publish
    const published = await original.call(this, deviceIds);
    for (const assignment of published.values()) sent.push(assignment.version);
    return published;
  };
  t.after(() => (AssignmentPublisher.prototype.sendRetained = original));
  const first = request('POST', '/api/assignments', { model: 'wine', version: '3', role: 'active', deviceIds: ['real-01'] });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const second = request('POST', '/api/assignments', { model: 'wine', version: '4', role: 'active', deviceIds: ['real-01'] });
  for (const [response, version] of [[await first, '3'], [await second, '4']] as const) {
    assert.equal(response.status, 201, await response.clone().text());
    const answer = (await response.json()) as { version: string; artifactId: string; url: string };
    assert.equal(answer.version, version);
    assert.ok(answer.url.includes(answer.artifactId), `${version}: ${answer.url} names ${answer.artifactId}`);
  }
  assert.deepEqual(sent, ['4', '4'], 'the retained topic holds the newer one');
});
