import { z } from 'zod';

/** Shapes shared by REST routes and their OpenAPI document. */
export const ErrorResponseSchema = z.strictObject({
  error: z.strictObject({
    code: z.string(),
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
  state: z.enum(['queued', 'running', 'succeeded', 'failed']),
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

export const BlobGcResultSchema = z.strictObject({
  dryRun: z.boolean(),
  scanned: z.number().int(),
  referenced: z.number().int(),
  young: z.number().int(),
  removed: z.array(z.strictObject({ sha256: z.string(), bytes: z.number().int() })),
  staleUploads: z.number().int(),
  freedBytes: z.number().int(),
});

/** Paging over lists ordered by an integer key. */
export const PageQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  after: z.coerce.number().int().min(0).optional(),
});
