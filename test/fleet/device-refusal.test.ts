import assert from 'node:assert/strict';
import { test } from 'node:test';
import { artifactId } from '../../shared/artifact/manifest.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { reportsTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { enrolledDevice } from '../helpers/fleet-ingest-probe.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

/**
 * A device's latest refusal (GET /api/devices/:id) is what its slots cannot show. An assignment
 * it refused and then carried out after all (its config mended, its disk freed: the retained
 * assignment taken again) is no refusal any more; a failed benchmark says which model failed.
 */
test("a device's refusal of an assignment it carried out since is no longer shown as its latest refusal; a failed benchmark names the failing model", async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey, version: '1' });
  assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
  const device = await enrolledDevice(t, server, 'dev-r');
  const assign = async (role: 'active' | 'candidate') => {
    const response = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role, deviceIds: ['dev-r'] } });
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { assignmentId: string }).assignmentId;
  };
  const lastRefusal = async () => ((await (await server.request('GET', '/api/devices/dev-r')).json()) as { lastRefusal: Record<string, unknown> | null }).lastRefusal;
  let n = 0;
  const answer = async (assignmentId: string, outcome: AssignmentReport['outcome'], extra: Partial<AssignmentReport> = {}) => {
    const report: AssignmentReport = { schema: 1, id: `answer-dev-r-${n++}`, kind: 'assignment', deviceId: 'dev-r', createdAt: new Date().toISOString(), assignmentId, outcome, role: 'active', model: 'iris', version: '1', sha256: artifactId(artifact.manifest), reason: outcome === 'refused' ? 'download failed: HTTP 401' : null, ...extra };
    await device.publishAsync(reportsTopic('dev-r'), Buffer.from(JSON.stringify(report)), { qos: 1 });
  };

  const activation = await assign('active');
  await answer(activation, 'refused');
  await waitFor(async () => (await lastRefusal())?.assignmentId === activation, 10_000, 'the refusal shown');
  assert.deepEqual({ ...(await lastRefusal()), at: 'at' }, { assignmentId: activation, outcome: 'refused', role: 'active', model: 'iris', version: '1', reason: 'download failed: HTTP 401', failedRole: null, at: 'at' });
  // Its token mended, the device takes the retained assignment again and activates it.
  await answer(activation, 'activated');
  await waitFor(async () => (await lastRefusal()) === null, 10_000, 'the refusal carried out since is gone');

  // A failed benchmark of the candidate that was the device's own model's failure says so.
  const candidate = await assign('candidate');
  await answer(candidate, 'installed', { role: 'candidate' });
  await answer(candidate, 'benchmark-failed', { role: 'candidate', reason: 'the active model 1: missing', failedRole: 'active' });
  await waitFor(async () => (await lastRefusal())?.assignmentId === candidate, 10_000, 'the failed benchmark shown');
  assert.equal((await lastRefusal())?.failedRole, 'active');
  assert.equal((await lastRefusal())?.outcome, 'benchmark-failed');

  // An assignment passed over for a newer one (the device was offline for both) is routine, not a
  // refusal to look into, and does not hide the real one before it.
  const passedOver = await assign('candidate');
  const newer = await assign('active');
  await answer(passedOver, 'refused', { role: 'candidate', reason: `superseded by assignment ${newer}` });
  await answer(newer, 'activated');
  // A heartbeat after them, from the same connection: the server takes a client's messages in
  // order, so once it is stored, so are the answers before it.
  const heartbeat = { schema: 1, deviceId: 'dev-r', sentAt: new Date().toISOString(), uptimeSeconds: 42, cpuPercent: 1, rssBytes: 1000, active: null, candidate: null, previous: null };
  await device.publishAsync(telemetryTopic('dev-r'), Buffer.from(JSON.stringify(heartbeat)), { qos: 1 });
  await waitFor(async () => ((await (await server.request('GET', '/api/devices/dev-r')).json()) as { heartbeat: { uptimeSeconds: number } | null }).heartbeat?.uptimeSeconds === 42, 10_000, 'the heartbeat after the answers stored');
  assert.equal((await lastRefusal())?.assignmentId, candidate, 'still the failed benchmark, not the passed-over assignment');
});
