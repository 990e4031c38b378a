import { createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Manifest } from '../../../shared/artifact/manifest.ts';
import { keyId } from '../../../shared/artifact/signing-keys.ts';
import { RegistryService } from '../../../server/registry/registry-service.ts';
import type { Store } from '../../../server/store/store.ts';

/**
 * Registers `model@version` with a synthetic manifest (rollouts check the registry, never the
 * files). `signedBy`: the manifest names that key as its signer (the registry takes manifests
 * already verified), so a server with that signing key assigns it directly.
 */
export async function registerVersion(store: Store, model: string, version: string, signedBy?: KeyObject): Promise<void> {
  const manifest = {
    formatVersion: 1,
    name: model,
    version,
    createdAt: '2026-01-01T00:00:00.000Z',
    task: 'classification',
    features: ['a', 'b'],
    labels: ['x', 'y'],
    labelName: 'kind',
    architecture: { layers: [2, 2], inputs: 2, params: 6, flopsPerSample: 12, activations: ['softmax'] },
    lineage: { parentSha256: null, epsilon: null, epsilonMode: null, dataFingerprint: createHash('sha256').update(`data-${model}-${version}`).digest('hex'), method: 'general', seed: 1 },
    metrics: { test: { accuracy: 0.9 } },
    files: {},
    ...(signedBy ? { signature: { keyId: keyId(signedBy), value: 'x' } } : {}),
  } as unknown as Manifest;
  await new RegistryService(store).register({ model, manifest, actor: 'test' });
}

/** Devices dev-01..dev-NN labelled site=north. */
export function testDevices(count: number, baseline: string | null = '1') {
  return Array.from({ length: count }, (_, i) => ({ id: `dev-${String(i + 1).padStart(2, '0')}`, labels: { site: 'north' }, baseline }));
}

/** setWeight 50 → builtin analysis (2 measurements 1 s apart) → pause `pause` → 100 %. */
export function stagedSpecYaml(options: { model?: string; version?: string; pause?: string } = {}): string {
  return `apiVersion: fleetprune/v1
kind: Rollout
model: ${options.model ?? 'wine'}
candidateVersion: "${options.version ?? '2'}"
target:
  matchLabels:
    site: north
steps:
  - setWeight: 50
  - analysis:
      metrics:
        - name: server-cpu
          interval: 1s
          count: 2
          successCondition: result[0] >= 0
          provider:
            builtin:
              query: fleetprune_process_cpu_user_seconds_total
  - pause:
      ${options.pause === undefined ? '{}' : `duration: ${options.pause}`}
  - setWeight: 100
`.replace('pause:\n      {}', 'pause: {}');
}
