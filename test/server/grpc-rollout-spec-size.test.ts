import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { test } from 'node:test';
import { MAX_SPEC_BYTES } from '../../server/rollout/spec-document.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** A YAML spec of `bytes` bytes: a few fields and a long comment. */
function specOf(bytes: number): string {
  const head = 'model: iris\ncandidate: v2\n# ';
  return head + 'x'.repeat(bytes - head.length);
}

for (const maxBodyBytes of [undefined, 200_000]) {
  test(`gRPC StartRollout refuses a spec larger than REST takes with RESOURCE_EXHAUSTED, as REST answers 413 (--max-body-bytes ${maxBodyBytes ?? 'default'})`, { timeout: 60_000 }, async (t) => {
    const server = (await startTestServer(t, maxBodyBytes === undefined ? {} : { config: { maxBodyBytes } }))!;
    const rollouts = grpcClient(server.grpcAddress, 'Rollouts', ADMIN_TOKEN);
    t.after(() => rollouts.close());
    const limit = Math.min(maxBodyBytes ?? Infinity, MAX_SPEC_BYTES);
    const spec = specOf(limit + 1);
    const rest = await server.request('POST', '/api/rollouts', { body: spec, headers: { 'content-type': 'application/yaml' } });
    assert.equal(rest.status, 413, await rest.text());
    await assert.rejects(rollouts.call('StartRollout', { spec }), (error: any) => {
      assert.equal(error.code, status.RESOURCE_EXHAUSTED, `${status[error.code]}: ${String(error.details).slice(0, 200)}`);
      const expected = maxBodyBytes === undefined ? `larger than ${MAX_SPEC_BYTES} bytes, the most a rollout spec may be` : `larger than the ${maxBodyBytes}-byte limit (--max-body-bytes)`;
      assert.equal(error.details, `spec: ${limit + 1} bytes, ${expected}`);
      return true;
    });
    // Just within the limit, the spec is read (and refused for what it says, not for its size).
    await assert.rejects(rollouts.call('StartRollout', { spec: specOf(limit) }), (error: any) => error.code !== status.RESOURCE_EXHAUSTED);
    assert.equal((await rollouts.call('ListRollouts', {})).total, 0, 'no rollout was started');
  });
}
