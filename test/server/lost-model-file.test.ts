import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { runCli } from './helpers/run-cli.ts';
import { makeArtifact } from './helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/**
 * A data dir restored without its blobs/ (or a blob removed by hand) leaves registered versions
 * whose model.onnx no device can download: an assignment or a rollout of such a version is refused
 * up front, naming the file and how to upload it again, instead of every device failing later.
 */
test('assigning or rolling out a version whose model.onnx is gone from the blob store is refused, saying how to upload it again; pushing the artifact again restores it', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const artifact = await makeArtifact(t, { seed: 41, privateKey: key });
  assert.equal((await runCli(['models', 'push', artifact.dir, ...connection])).code, 0);
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-1', labels: {} } });
  assert.equal(enrolled.status, 201, await enrolled.clone().text());

  const onnx = artifact.manifest.files['model.onnx']!.sha256;
  await rm(server.server.ctx.blobs.pathOf(onnx));
  const expected = `iris@1's model.onnx (sha256 ${onnx.slice(0, 12)}…) is missing from the server's blob store (a data dir restored without its blobs/, or a file removed by hand): \`fleetprune models push DIR\` of its artifact uploads it again`;

  const assigned = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['dev-1'] } });
  assert.equal(assigned.status, 409);
  assert.equal(((await assigned.json()) as { error: { message: string } }).error.message, `${expected}; device dev-1 does not hold it, and would fail to download it`);
  const started = await server.request('POST', '/api/rollouts', { json: { model: 'iris', candidateVersion: '1', steps: [{ pause: {} }] } });
  assert.equal(started.status, 409);
  assert.equal(((await started.json()) as { error: { message: string } }).error.message, `candidateVersion: ${expected}`);
  assert.deepEqual(await server.server.ctx.store.audit.list({ limit: 50 }).then((entries) => entries.filter((entry) => entry.action === 'assignment.create' || entry.action === 'rollout.start')), [], 'nothing recorded');

  // What the message says to do: the push uploads the lost file again, and the assignment goes through.
  const pushed = await runCli(['models', 'push', artifact.dir, ...connection]);
  assert.equal(pushed.code, 0, pushed.stderr);
  const again = await server.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['dev-1'] } });
  assert.equal(again.status, 201, await again.clone().text());
});
