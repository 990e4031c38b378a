import type { KeyObject } from 'node:crypto';
import { BenchmarkReportSchema, type BenchmarkReport, type ModelRef, type Role } from '../shared/protocol/payloads.ts';
import type { Holdout } from './holdout.ts';
import { benchmarkSideBySide, ModelBenchmarkError, type BenchmarkSettings } from './model-benchmark.ts';
import type { InstalledModel, ModelStore } from './model-store.ts';

/** What one benchmark measures and answers. */
export interface BenchmarkSubject {
  deviceId: string;
  /** The report's id (deterministic for the assignment and the candidate, see report-ids.ts). */
  reportId: string;
  /** The assignment that put the candidate in its slot, or null (a state from before they were kept). */
  assignmentId: string | null;
  candidate: ModelRef;
  active: ModelRef | null;
}

/**
 * Benchmarks the candidate side by side with the active model on the holdout, each loaded from
 * the store and verified against the server's key first, and returns the benchmark report. Throws
 * naming the model when one fails verification, and with `signal`'s reason when it is aborted.
 */
export async function benchmarkCandidate(
  subject: BenchmarkSubject,
  using: { store: ModelStore; serverKey: KeyObject; holdout: Holdout; settings: BenchmarkSettings; clock: () => Date },
  signal: AbortSignal,
  hooks: Parameters<typeof benchmarkSideBySide>[4] = {},
): Promise<BenchmarkReport> {
  const models: { role: Role; version: string; model: InstalledModel }[] = [];
  for (const [role, ref] of [['active', subject.active], ['candidate', subject.candidate]] as const) {
    if (!ref) continue;
    const verified = await using.store.loadVerified(ref.sha256, using.serverKey);
    if ('failure' in verified) throw new ModelBenchmarkError(role, `the ${role} model ${ref.version}: ${verified.failure}`);
    models.push({ role, version: ref.version, model: verified });
  }
  const results = await benchmarkSideBySide(models, using.holdout, using.settings, signal, hooks);
  // The holdout as the candidate reads it (its labels read for the candidate's task).
  const data = using.holdout.forModel(models.at(-1)!.model.manifest);
  return BenchmarkReportSchema.parse({
    schema: 1,
    id: subject.reportId,
    kind: 'benchmark',
    deviceId: subject.deviceId,
    createdAt: using.clock().toISOString(),
    assignmentId: subject.assignmentId,
    holdout: { rows: data.x.length, fingerprint: data.fingerprint, task: data.task },
    active: results.find((result) => result.role === 'active') ?? null,
    candidate: results.find((result) => result.role === 'candidate')!,
  });
}
