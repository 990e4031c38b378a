import type { BlobProblemKind } from '../artifacts/blob-check.ts';
import type { GrpcRollout } from './rollout-display.ts';

/**
 * gRPC messages as the CLI's --json prints them: the shapes of the REST API (camelCase, null for
 * an absent value, numbers as numbers, JSON fields parsed), never the wire artefacts of the
 * protobuf loader (snake_case, int64 as strings, `_field` oneof markers, `*_json` strings).
 */

/** A model version as the Version message carries it (status fields: GetVersion and ListVersions). */
export interface GrpcVersion {
  model: string;
  version: string;
  seq: number;
  artifact_id: string;
  parent_artifact_id: string;
  parent_model: string;
  parent_version: string;
  epsilon?: number | null;
  metrics_json: string;
  aliases: string[];
  retired: boolean;
  created_at: string;
  created_by: string;
  data_fingerprint: string;
  manifest_json: string;
  status?: string;
  status_reason?: string;
  status_at?: string;
  /** GetVersion only. */
  training_json?: string;
}

/** The manifest's lineage.epsilonMode, as REST's lineage gives it (null when absent). */
function epsilonModeOf(manifestJson: string): string | null {
  const manifest = parseJson(manifestJson) as { lineage?: { epsilonMode?: unknown } } | null;
  const mode = manifest?.lineage?.epsilonMode;
  return typeof mode === 'string' ? mode : null;
}

/** A version as GET /api/models/:name/versions lists it. */
export function versionJson(v: GrpcVersion) {
  return {
    model: v.model,
    version: v.version,
    seq: v.seq,
    artifactId: v.artifact_id,
    manifest: parseJson(v.manifest_json),
    lineage: {
      parentArtifactId: v.parent_artifact_id || null,
      parent: v.parent_model ? { model: v.parent_model, version: v.parent_version } : null,
      epsilon: typeof v.epsilon === 'number' ? v.epsilon : null,
      epsilonMode: epsilonModeOf(v.manifest_json),
      dataFingerprint: v.data_fingerprint,
    },
    metrics: parseJson(v.metrics_json),
    aliases: v.aliases,
    retired: v.retired,
    createdAt: v.created_at,
    createdBy: v.created_by,
    status: v.status ? { status: v.status, reason: v.status_reason ?? '', at: v.status_at ?? '' } : null,
  };
}

/** GET /api/models/:name/versions/:ref: the version with what trained it. */
export function versionDetailJson(v: GrpcVersion) {
  return { ...versionJson(v), training: v.training_json ? parseJson(v.training_json) : null };
}

export interface GrpcModel {
  name: string;
  created_at: string;
  created_by: string;
  version_count: number;
  latest_version: string;
}

/** GET /api/models. */
export function modelJson(m: GrpcModel) {
  return { name: m.name, createdAt: m.created_at, createdBy: m.created_by, versionCount: m.version_count, latestVersion: m.latest_version || null };
}

export interface GrpcGcResult {
  dry_run: boolean;
  scanned: string;
  referenced: string;
  young: string;
  removed: { sha256: string; bytes: string }[];
  freed_bytes: string;
  stale_uploads: string;
}

/** A message of gRPC Blobs.CheckBlobs: progress, or the result (int64s as strings). */
export interface GrpcBlobCheckEvent {
  progress?: { blobs: string; total_blobs: string; bytes: string; total_bytes: string };
  result?: {
    dry_run: boolean;
    versions: string;
    blobs: string;
    bytes: string;
    sound: string;
    problems: {
      sha256: string;
      bytes: string;
      problem: string;
      detail: string;
      set_aside: string;
      versions: { model: string; version: string; file: string; aliases: string[]; retired: boolean }[];
      devices_active: string;
      devices_candidate: string;
      devices_previous: string;
    }[];
  };
}

/** POST /api/blobs/check. */
export function blobCheckJson(r: NonNullable<GrpcBlobCheckEvent['result']>) {
  return {
    dryRun: r.dry_run,
    versions: Number(r.versions),
    blobs: Number(r.blobs),
    bytes: Number(r.bytes),
    sound: Number(r.sound),
    problems: r.problems.map((problem) => ({
      sha256: problem.sha256,
      bytes: Number(problem.bytes),
      problem: problem.problem as BlobProblemKind,
      detail: problem.detail,
      setAside: problem.set_aside === '' ? null : problem.set_aside,
      versions: problem.versions.map((use) => ({ model: use.model, version: use.version, file: use.file, aliases: use.aliases ?? [], retired: use.retired })),
      devices: { active: Number(problem.devices_active), candidate: Number(problem.devices_candidate), previous: Number(problem.devices_previous) },
    })),
  };
}

/** POST /api/blobs/gc. */
export function gcJson(r: GrpcGcResult) {
  return {
    dryRun: r.dry_run,
    scanned: Number(r.scanned),
    referenced: Number(r.referenced),
    young: Number(r.young),
    removed: r.removed.map((blob) => ({ sha256: blob.sha256, bytes: Number(blob.bytes) })),
    staleUploads: Number(r.stale_uploads),
    freedBytes: Number(r.freed_bytes),
  };
}

export interface GrpcToken {
  id: string;
  role: string;
  label: string;
  created_at: string;
  created_by: string;
  revoked_at: string;
  expires_at: string;
}

/** GET /api/tokens. */
export function tokenJson(t: GrpcToken) {
  return { id: t.id, role: t.role, label: t.label, createdAt: t.created_at, createdBy: t.created_by, revokedAt: t.revoked_at || null, expiresAt: t.expires_at || null };
}

interface GrpcModelRef {
  model: string;
  version: string;
  sha256: string;
}

export interface GrpcDevice {
  id: string;
  labels: Record<string, string>;
  online: boolean;
  last_seen: string;
  active?: GrpcModelRef | null;
  candidate?: GrpcModelRef | null;
  previous?: GrpcModelRef | null;
  enrolled_at: string;
  revoked_at: string;
  assignment_id: string;
  assignment_version: string;
  assignment_role: string;
  enrolled_by: string;
  assignment_model: string;
  assignment_issued_at: string;
}

/** GET /api/devices as the Device message carries it: all but the heartbeat. */
export function deviceJson(d: GrpcDevice) {
  const ref = (r: GrpcModelRef | null | undefined) => (r ? { model: r.model, version: r.version, sha256: r.sha256 } : null);
  const active = ref(d.active);
  return {
    id: d.id,
    labels: d.labels,
    enrolledAt: d.enrolled_at,
    enrolledBy: d.enrolled_by,
    revokedAt: d.revoked_at || null,
    online: d.online,
    lastSeen: d.last_seen || null,
    active,
    candidate: ref(d.candidate),
    previous: ref(d.previous),
    assignment: d.assignment_id ? { id: d.assignment_id, model: d.assignment_model, version: d.assignment_version, role: d.assignment_role, issuedAt: d.assignment_issued_at } : null,
  };
}

function parseJson(text: string): unknown {
  return text === '' ? null : JSON.parse(text);
}

/** A job as the Job message carries it. */
export interface GrpcJobRecord {
  id: string;
  kind: string;
  state: string;
  progress_json: string;
  result_json: string;
  error: string;
  created_at: string;
  updated_at: string;
  created_by: string;
  node: string;
  request_json: string;
}

/** GET /api/jobs/:id. */
export function jobJson(job: GrpcJobRecord) {
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    request: job.request_json ? parseJson(job.request_json) : null,
    progress: job.progress_json ? parseJson(job.progress_json) : null,
    result: job.result_json ? parseJson(job.result_json) : null,
    error: job.error || null,
    createdAt: job.created_at,
    updatedAt: job.updated_at,
    createdBy: job.created_by,
    node: job.node || null,
  };
}

/** GET /api/rollouts (a rollout summary). */
export function rolloutJson(r: GrpcRollout) {
  // A paused rollout always has a pause message and a since; an older server sends only the message.
  const paused = Boolean(r.pause_since || r.pause_message);
  const { total, candidate, delivered, pending, retrying, unreachable, refused } = r.devices;
  // An older server sends no reassigned count (its refused counted them): 0.
  const reassigned = r.devices.reassigned ?? 0;
  return {
    id: r.id,
    model: r.model,
    candidateVersion: r.candidate_version,
    previousProduction: r.previous_production || null,
    phase: r.phase,
    terminal: r.terminal,
    stepIndex: r.step_index,
    stepCount: r.step_count,
    stepStage: r.step_stage,
    currentStep: r.current_step || null,
    weight: r.weight,
    devices: { total, candidate, delivered, pending, retrying, unreachable, refused, reassigned },
    pause: paused ? { reason: r.pause_reason ?? '', since: r.pause_since ?? '', until: r.pause_until || null, message: r.pause_message } : null,
    outcome: r.outcome_status ? { status: r.outcome_status, reason: r.outcome_reason, at: r.outcome_at ?? '' } : null,
    revision: Number(r.revision),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
