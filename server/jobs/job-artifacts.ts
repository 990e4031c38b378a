import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { verifyArtifact } from '../../shared/artifact/verify-artifact.ts';
import { GENERAL_SUBDIR } from '../pruning/output-layout.ts';

/** What a pruning worker says it wrote: the general model's manifest and the pruned one's. */
export interface ReportedArtifacts {
  general: Manifest;
  pruned: Manifest;
}

/**
 * The general and pruned artifacts of a finished job as verified on disk (hashes and signature
 * against `publicKey`), checked to be the ones the worker reported: what gets registered is what
 * is on disk, never the worker's message about it. Throws naming the directory otherwise.
 */
export async function verifiedJobArtifacts(
  outDir: string,
  reported: ReportedArtifacts,
  publicKey: KeyObject,
): Promise<{ general: { dir: string; manifest: Manifest }; pruned: { dir: string; manifest: Manifest } }> {
  const check = async (dir: string, expected: Manifest) => {
    const verified = await verifyArtifact(dir, publicKey);
    if (!verified.ok) throw new Error(`the job's artifact in ${dir} does not verify: ${verified.failures.join('; ')}`);
    if (artifactId(verified.manifest!) !== artifactId(expected)) throw new Error(`the job's artifact in ${dir} is not the one its worker reported`);
    return { dir, manifest: verified.manifest! };
  };
  return { general: await check(join(outDir, GENERAL_SUBDIR), reported.general), pruned: await check(outDir, reported.pruned) };
}
