import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

test('gRPC JSON fields with a key given twice are INVALID_ARGUMENT naming it, as REST refuses such a body', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  const assignments = grpcClient(server.grpcAddress, 'Assignments', ADMIN_TOKEN);
  t.after(() => [models, jobs, assignments].forEach((client) => client.close()));
  const refused = (details: string) => (error: any) => {
    assert.equal(error.code, status.INVALID_ARGUMENT, `${error.code} ${error.details}`);
    assert.equal(error.details, details);
    return true;
  };

  // REST's answer to the same manifest.
  const manifest = '{"formatVersion": 1, "files": {"model.onnx": {"sha256": "a"}, "model.onnx": {"sha256": "b"}}}';
  const rest = await server.request('POST', '/api/models/iris/versions/check', { body: `{"manifest": ${manifest}}`, headers: { 'content-type': 'application/json' } });
  assert.equal(rest.status, 400);
  assert.equal(((await rest.json()) as any).error.message, 'body.manifest.files.model.onnx: given twice; send each field once');

  for (const method of ['CheckPush', 'PushVersion']) {
    await assert.rejects(models.call(method, { name: 'iris', manifest_json: manifest }), refused('manifest_json.files.model.onnx: given twice; send each field once'));
  }
  const csv = 'a,y\n1,0\n2,1\n3,0\n4,1\n';
  await assert.rejects(
    jobs.call('StartPrune', { name: 'iris', label: 'y', csv, options_json: '{"units": 4, "units": 8}' }),
    refused('options_json.units: given twice; send each field once'),
  );
  await assert.rejects(
    assignments.call('CreateAssignment', { model: 'iris', version: 'v1', role: 'candidate', selector_json: '{"matchLabels": {"site": "a", "site": "b"}}' }),
    refused('selector_json.matchLabels.site: given twice; send each field once'),
  );
  assert.deepEqual((await models.call('ListModels', {})).models, [], 'no model was registered');
  assert.equal((await jobs.call('ListJobs', {})).total, 0, 'no job was started');
});
