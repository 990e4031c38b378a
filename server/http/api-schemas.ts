import { BLOB_PROBLEM_KINDS } from '../artifacts/blob-check.ts';
import { z } from 'zod';
import { JOB_STATES } from '../store/repositories/jobs-repository.ts';
import { HTTP_STATUS, type ErrorCode } from '../app/service-error.ts';

/** Shapes shared by REST routes and their OpenAPI document. */
export const ErrorResponseSchema = z.strictObject({
  error: z.strictObject({
    // What a client branches on (ErrorCode; `internal`: an unexpected fault, details in the server log).
    code: z.enum([...(Object.keys(HTTP_STATUS) as ErrorCode[]), 'internal']),
    message: z.string(),
  }),
});

export const ModelSchema = z.strictObject({
  name: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  versionCount: z.number().int(),
  latestVersion: z.string().nullable(),
});

export const VersionSchema = z.strictObject({
  model: z.string(),
  version: z.string(),
  seq: z.number().int(),
  artifactId: z.string(),
  manifest: z.record(z.string(), z.unknown()),
  lineage: z.strictObject({
    parentArtifactId: z.string().nullable(),
    parent: z.strictObject({ model: z.string(), version: z.string() }).nullable(),
    epsilon: z.number().nullable(),
    /** How ε was read: relative (to the layer's most variable unit) or absolute; null with ε (a model not pruned). */
    epsilonMode: z.enum(['relative', 'absolute']).nullable(),
    dataFingerprint: z.string(),
  }),
  metrics: z.record(z.string(), z.unknown()),
  aliases: z.array(z.string()),
  retired: z.boolean(),
  createdAt: z.string(),
  createdBy: z.string(),
});

export const TokenSchema = z.strictObject({
  id: z.string(),
  role: z.string(),
  label: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  revokedAt: z.string().nullable(),
  /** When it stops working; null: never. */
  expiresAt: z.string().nullable(),
});

export const AuditEntrySchema = z.strictObject({
  id: z.number().int(),
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  target: z.string(),
  details: z.record(z.string(), z.unknown()),
});

export const JobSchema = z.strictObject({
  id: z.string(),
  kind: z.string(),
  /** `cancelled`: ended by a cancel (`error` says who: "cancelled by <actor>"); `failed`: ended by anything else. */
  state: z.enum(JOB_STATES),
  /** What the job was asked: for prune its name, label, task, data (a CSV sent inline shown by its size) and options. */
  request: z.unknown(),
  progress: z.unknown(),
  result: z.unknown(),
  error: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  createdBy: z.string(),
  /** The server (--node-id) that runs the job; null for jobs from before nodes. */
  node: z.string().nullable(),
});

export const BlobSchema = z.strictObject({
  sha256: z.string(),
  bytes: z.number().int(),
  created: z.boolean(),
});

export const BlobCheckResultSchema = z.strictObject({
  dryRun: z.boolean(),
  versions: z.number().int().describe('registered versions whose files were checked'),
  blobs: z.number().int().describe('distinct files they list, each read whole and hashed once'),
  bytes: z.number().int().describe('bytes read'),
  sound: z.number().int().describe('files stored whole and sound'),
  problems: z.array(
    z.strictObject({
      sha256: z.string(),
      bytes: z.number().int().describe('the size the manifests give'),
      problem: z.enum(BLOB_PROBLEM_KINDS),
      detail: z.string(),
      setAside: z.string().nullable().describe('where a damaged copy was moved (null: not moved, as in a dry run)'),
      versions: z.array(z.strictObject({ model: z.string(), version: z.string(), file: z.string(), aliases: z.array(z.string()), retired: z.boolean() })),
      devices: z
        .strictObject({ active: z.number().int(), candidate: z.number().int(), previous: z.number().int() })
        .describe("live devices holding those versions in each slot (previous: a rollback's target)"),
    }),
  ),
});

export const BlobGcResultSchema = z.strictObject({
  dryRun: z.boolean(),
  scanned: z.number().int(),
  referenced: z.number().int(),
  young: z.number().int(),
  removed: z.array(z.strictObject({ sha256: z.string(), bytes: z.number().int() })),
  staleUploads: z.number().int(),
  freedBytes: z.number().int(),
});

/**
 * A whole-number query parameter (`?limit=50`) from `min` to `max`, with messages that say what
 * is wrong with what was sent: not a number (`abc`, `-1`, `1.5`) or out of range (one given more than once
 * is refused before, by refuseRepeatedQuery).
 */
export function queryInteger(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const unbounded = max === Number.MAX_SAFE_INTEGER;
  const range = unbounded ? `a whole number, ${min} or more` : `a whole number from ${min} to ${max}`;
  // `?before=99999999999999999999999` is a whole number of 1 or more: what is wrong is its size.
  const tooLarge = unbounded ? `must be at most ${max}` : `must be ${range}`;
  return z
    .string({ error: `must be ${range}` })
    .regex(/^\d+$/, { error: (issue) => `must be ${range}, not "${String(issue.input).slice(0, 40)}"` })
    .transform(Number)
    .pipe(z.number().min(min, { error: `must be ${range}` }).max(max, { error: tooLarge }));
}

/** Paging over lists ordered by an integer key. */
export const PageQuerySchema = z.strictObject({
  limit: queryInteger(1, 1000).optional(),
  after: queryInteger(0).optional(),
});
