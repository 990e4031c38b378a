import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import type { UnknownModel } from './fleet-ingest.ts';
import type { FleetRepositories } from './fleet-store.ts';

/**
 * The first model a benchmark report names (its candidate, then its active one) that is not a
 * registered version with that sha256, or null when both are. A device runs only what it was
 * assigned, so anything else is a buggy or forged report: stored, it would add history rows and
 * metric series for models that never existed. Retired versions count (devices still run them);
 * the registry never deletes a version, so a device's running model stays registered.
 */
export async function unknownModelOf(report: BenchmarkReport, versions: FleetRepositories['versions']): Promise<UnknownModel | null> {
  for (const entry of [report.candidate, report.active]) {
    if (entry === null) continue;
    if ((await versions.artifactOf(entry.model, entry.version)) !== entry.sha256) {
      return { outcome: 'unknown-model', role: entry.role, ref: { model: entry.model, version: entry.version, sha256: entry.sha256 } };
    }
  }
  return null;
}
