import type { Manifest } from '../../shared/artifact/manifest.ts';
import type { ModelRef } from '../../shared/protocol/payloads.ts';
import type { Store } from '../../server/store/store.ts';

/**
 * Registers each ref as a model version (a stub manifest; its sha256 as the artifact id), as if it
 * had been pushed: the server ingests benchmark reports only about registered versions. A version
 * registered already is left as it is.
 */
export async function registerVersions(store: Pick<Store, 'models'>, refs: readonly ModelRef[]): Promise<void> {
  const at = new Date().toISOString();
  for (const ref of refs) {
    if (await store.models.getVersion(ref.model, ref.version)) continue;
    await store.models.ensureModel(ref.model, at, 'test');
    await store.models.insertVersion({
      model: ref.model,
      version: ref.version,
      seq: (await store.models.maxSeq(ref.model)) + 1,
      artifactId: ref.sha256,
      manifest: { name: ref.model, lineage: { parentSha256: null } } as unknown as Manifest,
      parentArtifactId: null,
      epsilon: null,
      dataFingerprint: 'fp',
      metrics: { test: { accuracy: 0.9 } },
      createdAt: at,
      createdBy: 'test',
    });
  }
}
