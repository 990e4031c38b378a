import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signManifest } from '../../shared/artifact/signature.ts';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { startTestServer } from './helpers/test-server.ts';

// A signed manifest's lineage was registered as it came: `nothex` showed as the data set on the dashboard.
test('the registry refuses a lineage prune never writes, naming each field; nothing is registered', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 70, privateKey: signer.privateKey });
  const { signature: _signature, ...unsigned } = artifact.manifest;
  const manifest = signManifest({ ...unsigned, lineage: { ...unsigned.lineage, dataFingerprint: 'nothex', method: 'magic', seed: -5 } }, signer.privateKey);
  const response = await pushArtifact(server, 'iris', artifact.dir, manifest);
  assert.equal(response.status, 400);
  assert.equal(
    ((await response.json()) as { error: { message: string } }).error.message,
    'manifest.lineage.dataFingerprint: must be 64 lowercase hex digits (the SHA-256 prune computes of the data), not "nothex"; ' +
      'manifest.lineage.method: must be general or odf2nna, not "magic"; manifest.lineage.seed: must be from 0 to 2147483647 (the seeds prune takes), not -5',
  );
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
  assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201, 'as written it is registered');
});
