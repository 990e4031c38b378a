import { z } from 'zod';
import { sameText } from '../util/canonical-text.ts';
import { DEVICE_ID_PATTERN } from './topics.ts';

/**
 * Payload schemas of the fleet protocol. Every payload carries `schema: 1`. Readers ignore
 * fields they do not know (additive changes keep schema 1); a change that alters the meaning of
 * an existing field bumps `schema`, and a reader drops versions it does not know.
 */
export const SCHEMA_VERSION = 1;
const Schema = z.literal(SCHEMA_VERSION);

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
export const DeviceIdSchema = z.string().regex(DEVICE_ID_PATTERN, 'must be 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)');
const MessageId = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'must be 8-64 characters of A-Z a-z 0-9 _ -');
const Timestamp = z.iso.datetime();
const ModelName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
const Version = z.string().min(1).max(64);
const FiniteNumber = z.number().refine(Number.isFinite, 'must be a finite number');
const NonNegative = FiniteNumber.refine((value) => value >= 0, 'must be ≥ 0');
/** A count: a whole number from 0 up to 2^53 - 1. */
const Count = z.number().int('must be a whole number').min(0, 'must be ≥ 0');
const PositiveCount = z.number().int('must be a whole number').min(1, 'must be ≥ 1');
const Bytes = z.number().int('must be a whole number of bytes');
/**
 * Orders the messages of one stream (a device's assignments; the fleet commands): a device takes
 * none that is not newer than the newest it took, so an old message replayed is refused.
 */
const Sequence = z.number().int('must be a whole number').min(0, 'must be ≥ 0').max(Number.MAX_SAFE_INTEGER);
/** An ed25519 signature (base64) by the server's key: see shared/protocol/message-signature.ts. */
const MessageSignature = z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a base64 ed25519 signature');

/**
 * The server's word for an artifact signed by another key it trusts (`--trusted-key`): that key
 * (raw ed25519, base64), its key id, and the server's signature over both and the artifact id
 * (shared/protocol/signer-endorsement.ts), which a device keeps with the model to verify it again.
 */
export const SignerSchema = z.object({
  keyId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits'),
  publicKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'must be a base64 raw ed25519 public key'),
  signature: MessageSignature,
});
export type Signer = z.infer<typeof SignerSchema>;

export const ROLES = ['candidate', 'active'] as const;
export const RoleSchema = z.enum(ROLES);
export type Role = z.infer<typeof RoleSchema>;

/** `fleetprune/v1/devices/{id}/assignment` (server → device, retained, QoS 1). */
export const AssignmentSchema = z.object({
  schema: Schema,
  id: MessageId,
  issuedAt: Timestamp,
  model: ModelName,
  version: Version,
  /** The artifact id: sha256 of the canonical signed manifest. */
  sha256: Sha256,
  /** Where the signed manifest is: `{server}/api/artifacts/{sha256}/manifest.json`. */
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  role: RoleSchema,
  seq: Sequence,
  /** Present when the manifest is signed by a key other than the server's, which the server trusts and vouches for. */
  signer: SignerSchema.optional(),
  /**
   * Present (true) on an active assignment that sends the device back to its baseline (a rollout's
   * rollback, failure or abort): taken from the previous slot it is answered `rolled-back`. An
   * activation without it (a promotion, an operator's assign) is answered `activated`, from disk or
   * downloaded. Older agents ignore it (it is signed with the rest: the signature covers the raw message).
   */
  revert: z.literal(true).optional(),
  signature: MessageSignature,
});
export type Assignment = z.infer<typeof AssignmentSchema>;

/** `fleetprune/v1/devices/{id}/status` (device → server, retained, QoS 1; the last will says offline). */
export const StatusSchema = z.object({
  schema: Schema,
  deviceId: DeviceIdSchema,
  online: z.boolean(),
  /** When the agent connected (for the will: when it last connected). */
  since: Timestamp,
});
export type Status = z.infer<typeof StatusSchema>;

export const ModelRefSchema = z.object({ model: ModelName, version: Version, sha256: Sha256 });
export type ModelRef = z.infer<typeof ModelRefSchema>;

/** `fleetprune/v1/devices/{id}/telemetry` (device → server, QoS 1): the heartbeat. */
export const TelemetrySchema = z.object({
  schema: Schema,
  deviceId: DeviceIdSchema,
  sentAt: Timestamp,
  uptimeSeconds: NonNegative,
  /** Process CPU time over wall time since the previous heartbeat, in percent of one core. */
  cpuPercent: NonNegative,
  rssBytes: Count,
  active: ModelRefSchema.nullable(),
  candidate: ModelRefSchema.nullable(),
  previous: ModelRefSchema.nullable(),
  /**
   * The agent run the heartbeat comes from: a random id the agent picks when it starts, the same
   * in each of its heartbeats until it stops. `serving` counts from zero under each one, so a new
   * `runId` tells the server the agent restarted even when the counters are already higher than
   * the last ones it stored. Optional: agents that predate it are judged by their uptime.
   */
  runId: MessageId.optional(),
  /**
   * How often the agent sends a heartbeat, in seconds: the server marks a device offline that it
   * has not heard from for several intervals (one that died while the broker was down leaves no
   * last will, and its retained `online` stays). Optional: agents that predate it are never marked
   * offline by silence.
   */
  intervalSeconds: FiniteNumber.refine((value) => value > 0 && value <= 86_400, 'must be > 0 and ≤ 86400').optional(),
  /**
   * The sequence number of the newest assignment the agent took. A server whose record of the
   * device's assignments ends with an older one (its store restored from a backup taken before
   * that assignment) knows from it that the device has moved on, and takes the device's reported
   * active model, not the recorded assignment, as what a rollback sends it back to. Optional:
   * agents that predate it, and one that never took an assignment, leave it out.
   */
  assignmentSeq: Sequence.optional(),
  /** Cumulative since the agent started; the server keeps the latest with the device (its API and dashboard show it). */
  serving: z
    .object({
      /** Rows predicted by the active model. */
      predictions: Count,
      /** Rows the active model failed (its run threw, or gave a non-finite output); bad input is not counted. */
      errors: Count,
      /** Rows also run on the candidate, and how many of them agreed with the active model. */
      shadowRows: Count,
      shadowAgreements: Count,
      /** Rows whose shadow run on the candidate failed (absent from agents that predate it). */
      shadowErrors: Count.optional(),
    })
    .refine((serving) => serving.shadowAgreements <= serving.shadowRows, { path: ['shadowAgreements'], message: 'must be ≤ shadowRows' })
    .optional(),
});
export type Telemetry = z.infer<typeof TelemetrySchema>;

/** Classification: the share of `total` holdout rows predicted right; regression: MSE and R² (at most 1, unbounded below). */
export const ScoreSchema = z.union([
  z
    .object({ accuracy: FiniteNumber.refine((value) => value >= 0 && value <= 1, 'must be between 0 and 1'), correct: Count, total: PositiveCount })
    .refine((score) => score.correct <= score.total, { path: ['correct'], message: 'must be ≤ total' }),
  z.object({ mse: NonNegative, r2: FiniteNumber.refine((value) => value <= 1, 'must be ≤ 1'), total: PositiveCount }),
]);

/** One model's numbers in an on-device benchmark. */
export const ModelBenchmarkSchema = ModelRefSchema.extend({
  role: RoleSchema,
  score: ScoreSchema,
  latencyMs: z
    .object({ p50: NonNegative, p95: NonNegative, p99: NonNegative, samples: PositiveCount })
    .refine((latency) => latency.p50 <= latency.p95 && latency.p95 <= latency.p99, 'must have p50 ≤ p95 ≤ p99'),
  batchSize: PositiveCount,
  throughputRowsPerSecond: NonNegative,
  loadTimeMs: NonNegative,
  /** Resident set size after loading and running the model minus before; can be 0 or negative. */
  rssIncreaseBytes: Bytes,
});
export type ModelBenchmark = z.infer<typeof ModelBenchmarkSchema>;

const ReportBase = {
  schema: Schema,
  /** Unique per report; the server ingests a report id once. */
  id: MessageId,
  deviceId: DeviceIdSchema,
  createdAt: Timestamp,
};

export const BenchmarkReportSchema = z.object({
  ...ReportBase,
  kind: z.literal('benchmark'),
  assignmentId: MessageId.nullable(),
  holdout: z.object({ rows: PositiveCount, fingerprint: z.string().max(128), task: z.enum(['classification', 'regression']) }),
  /**
   * Side by side, measured in the same run; `active` is null on a device without an active model.
   * Each entry's role is the slot it is under: a mislabelled one would export the candidate's
   * numbers as the baseline's.
   */
  active: ModelBenchmarkSchema.extend({ role: z.literal('active') }).nullable(),
  candidate: ModelBenchmarkSchema.extend({ role: z.literal('candidate') }),
});
export type BenchmarkReport = z.infer<typeof BenchmarkReportSchema>;

export const ASSIGNMENT_OUTCOMES = ['installed', 'activated', 'rolled-back', 'candidate-dropped', 'refused', 'benchmark-failed'] as const;
export const AssignmentReportSchema = z.object({
  ...ReportBase,
  kind: z.literal('assignment'),
  /** The assignment or fleet command this answers. */
  assignmentId: MessageId,
  outcome: z.enum(ASSIGNMENT_OUTCOMES),
  role: RoleSchema,
  model: ModelName,
  version: Version,
  sha256: Sha256,
  /** Why it was refused or failed; one line. */
  reason: z.string().max(2000).nullable(),
  /**
   * With `benchmark-failed`: the model whose benchmark failed. `active`: the device's own model
   * (its holdout does not fit it, it gives non-finite outputs), so the failure is the device's,
   * not the candidate's. Absent (older agents): the candidate.
   */
  failedRole: RoleSchema.optional(),
});
export type AssignmentReport = z.infer<typeof AssignmentReportSchema>;

/** `fleetprune/v1/devices/{id}/reports` (device → server, QoS 1). */
export const ReportSchema = z.discriminatedUnion('kind', [BenchmarkReportSchema, AssignmentReportSchema]);
export type Report = z.infer<typeof ReportSchema>;

export const SelectorSchema = z.object({
  deviceIds: z.array(DeviceIdSchema).optional(),
  /** Every label must match; an empty selector matches every device. */
  labels: z.record(z.string(), z.string()).optional(),
});
export type Selector = z.infer<typeof SelectorSchema>;

/** `fleetprune/v1/fleet/commands` (server → devices, QoS 1, not retained). */
export const FleetCommandSchema = z.object({
  schema: Schema,
  id: MessageId,
  issuedAt: Timestamp,
  /** rollback: make the previous model active again (from disk); drop-candidate: empty the candidate slot. */
  command: z.enum(['rollback', 'drop-candidate']),
  selector: SelectorSchema,
  seq: Sequence,
  signature: MessageSignature,
});
export type FleetCommand = z.infer<typeof FleetCommandSchema>;

export function selectorMatches(selector: Selector, deviceId: string, labels: Readonly<Record<string, string>>): boolean {
  if (selector.deviceIds && !selector.deviceIds.includes(deviceId)) return false;
  // Compared as text: a fleet rollback for site=Zürich reaches a device enrolled with it decomposed.
  return Object.entries(selector.labels ?? {}).every(([key, value]) => Object.hasOwn(labels, key) && sameText(labels[key]!, value));
}
