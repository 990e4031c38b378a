import type { JobRecord } from '../store/repositories/jobs-repository.ts';
import type { ModelRecord, VersionRecord } from '../store/repositories/models-repository.ts';
import type { VersionStatusView } from '../registry/registry-service.ts';
import type { TokenRecord } from '../store/repositories/tokens-repository.ts';
import type { AuditEntry } from '../store/repositories/audit-repository.ts';

/** Store records → fleetprune.proto messages (snake_case, empty strings for absent values). */
export function modelMessage(model: ModelRecord) {
  return {
    name: model.name,
    created_at: model.createdAt,
    created_by: model.createdBy,
    version_count: model.versionCount,
    latest_version: model.latestVersion ?? '',
  };
}

/** With `status` (GetVersion, ListVersions), the latest status a rollout or a production-alias move gave the version. */
export function versionMessage(version: VersionRecord, status?: VersionStatusView | null) {
  return {
    model: version.model,
    version: version.version,
    seq: version.seq,
    artifact_id: version.artifactId,
    manifest_json: JSON.stringify(version.manifest),
    parent_artifact_id: version.parentArtifactId ?? '',
    parent_model: version.parent?.model ?? '',
    parent_version: version.parent?.version ?? '',
    ...(version.epsilon === null ? {} : { epsilon: version.epsilon }),
    data_fingerprint: version.dataFingerprint,
    metrics_json: JSON.stringify(version.metrics),
    aliases: version.aliases,
    retired: version.retired,
    created_at: version.createdAt,
    created_by: version.createdBy,
    ...(status ? { status: status.status, status_reason: status.reason, status_at: status.at } : {}),
  };
}

export function tokenMessage(token: TokenRecord) {
  return {
    id: token.id,
    role: token.role,
    label: token.label,
    created_at: token.createdAt,
    created_by: token.createdBy,
    revoked_at: token.revokedAt ?? '',
    expires_at: token.expiresAt ?? '',
  };
}

export function auditMessage(entry: AuditEntry) {
  return {
    id: String(entry.id),
    at: entry.at,
    actor: entry.actor,
    action: entry.action,
    target: entry.target,
    details_json: JSON.stringify(entry.details),
  };
}

export function jobMessage(job: JobRecord) {
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    progress_json: job.progress === null ? '' : JSON.stringify(job.progress),
    result_json: job.result === null ? '' : JSON.stringify(job.result),
    error: job.error ?? '',
    created_at: job.createdAt,
    updated_at: job.updatedAt,
    created_by: job.createdBy,
    node: job.node ?? '',
    request_json: JSON.stringify(job.request),
  };
}
