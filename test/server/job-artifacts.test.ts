import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createPublicKey } from 'node:crypto';
import { GENERAL_SUBDIR } from '../../server/pruning/output-layout.ts';
import { verifiedJobArtifacts } from '../../server/jobs/job-artifacts.ts';
import { makeArtifact, makeSigner } from './helpers/artifacts.ts';

test('a finished job registers the artifacts verified on disk, and only when they are the ones its worker reported', async (t) => {
  const signer = await makeSigner(t);
  const publicKey = createPublicKey(signer.privateKey);
  const general = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey, units: 16 });
  const pruned = await makeArtifact(t, { seed: 2, privateKey: signer.privateKey, units: 4, parent: general.manifest.files['model.onnx']!.sha256 });
  const outDir = await mkdtemp(join(tmpdir(), 'fleetprune-job-out-'));
  t.after(() => rm(outDir, { recursive: true, force: true }));
  await cp(pruned.dir, outDir, { recursive: true });
  await cp(general.dir, join(outDir, GENERAL_SUBDIR), { recursive: true });

  const found = await verifiedJobArtifacts(outDir, { general: general.manifest, pruned: pruned.manifest }, publicKey);
  assert.deepEqual([found.general.dir, found.pruned.dir], [join(outDir, GENERAL_SUBDIR), outDir]);
  assert.deepEqual([found.general.manifest, found.pruned.manifest], [general.manifest, pruned.manifest]);

  // A worker whose message names other artifacts than it wrote (here: the two swapped).
  await assert.rejects(verifiedJobArtifacts(outDir, { general: pruned.manifest, pruned: general.manifest }, publicKey), /artifact in .*general is not the one its worker reported/);
  await assert.rejects(verifiedJobArtifacts(outDir, { general: general.manifest, pruned: general.manifest }, publicKey), (error: Error) => {
    assert.equal(error.message, `the job's artifact in ${outDir} is not the one its worker reported`);
    return true;
  });
  // Signed by another key, or changed on disk after signing: not registered either.
  const other = await makeSigner(t);
  await assert.rejects(verifiedJobArtifacts(outDir, { general: general.manifest, pruned: pruned.manifest }, createPublicKey(other.privateKey)), /does not verify: .*signature/);
  await writeFile(join(outDir, 'model.onnx'), 'not the signed model');
  await assert.rejects(verifiedJobArtifacts(outDir, { general: general.manifest, pruned: pruned.manifest }, publicKey), /artifact in .* does not verify: .*model\.onnx/);
});
