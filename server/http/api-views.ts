import type { JobRecord } from '../store/repositories/jobs-repository.ts';
import type { VersionRecord } from '../store/repositories/models-repository.ts';
import type { VersionStatusView } from '../registry/registry-service.ts';

/** Store records as the API shows them (VersionSchema / JobSchema). */
export function versionView(record: VersionRecord) {
  return {
    model: record.model,
    version: record.version,
    seq: record.seq,
    artifactId: record.artifactId,
    manifest: record.manifest as unknown as Record<string, unknown>,
    lineage: {
      parentArtifactId: record.parentArtifactId,
      parent: record.parent,
      epsilon: record.epsilon,
      // Beside ε: an absolute ε of 5 would read as an impossible relative one.
      epsilonMode: record.manifest.lineage?.epsilonMode ?? null,
      dataFingerprint: record.dataFingerprint,
    },
    metrics: record.metrics as Record<string, unknown>,
    aliases: record.aliases,
    retired: record.retired,
    createdAt: record.createdAt,
    createdBy: record.createdBy,
  };
}

/** A version with its latest status (null: none yet), as GET /models/:name/versions(/:ref) show it. */
export function versionWithStatusView(record: VersionRecord, status: VersionStatusView | null) {
  return { ...versionView(record), status };
}

export function jobView(job: JobRecord) {
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    request: job.request,
    progress: job.progress,
    result: job.result,
    error: job.error,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    createdBy: job.createdBy,
    node: job.node,
  };
}
