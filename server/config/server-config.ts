import { resolve } from 'node:path';
import { z } from 'zod';
import { UserError } from '../../shared/util/errors.ts';

const Port = z.coerce.number().int().min(0).max(65535);
const ByteCount = z.coerce.number().int().positive();

/** Everything `fleetprune server` can be told, after flags and environment are merged. */
export const ServerConfigSchema = z
  .strictObject({
    dataDir: z.string().min(1).transform((path) => resolve(path)),
    host: z.string().min(1).default('0.0.0.0'),
    httpPort: Port.default(8080),
    grpcPort: Port.default(9090),
    databaseUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
      .optional(),
    /** PostgreSQL schema to work in (default: the connection's search_path); tests use a unique one. */
    databaseSchema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier')
      .optional(),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    trustedKeys: z.array(z.string().min(1)).default([]),
    /** JSON request bodies (manifests, job requests with inline CSV). */
    maxBodyBytes: ByteCount.default(16 * 1024 * 1024),
    /** One uploaded blob (PUT /api/blobs/:sha256). */
    maxBlobBytes: ByteCount.default(1024 * 1024 * 1024),
    /** Pruning jobs may read server-side data files under this directory only. */
    dataRoot: z.string().min(1).transform((path) => resolve(path)).optional(),
    adminToken: z.string().min(16, 'must be at least 16 characters').optional(),
    maxConcurrentJobs: z.coerce.number().int().min(1).max(64).default(1),
  })
  .superRefine((config, ctx) => {
    if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
      ctx.addIssue({ code: 'custom', path: [config.tlsCert === undefined ? 'tlsCert' : 'tlsKey'], message: 'give both --tls-cert and --tls-key, or neither' });
    }
  });

export type ServerConfigInput = z.input<typeof ServerConfigSchema>;
export type ServerConfig = z.output<typeof ServerConfigSchema>;

/** Where each setting comes from, so an error names what the user typed. */
const SOURCE: Record<string, string> = {
  dataDir: '--data-dir',
  host: '--host',
  httpPort: '--http-port',
  grpcPort: '--grpc-port',
  databaseUrl: '--database-url (or FLEETPRUNE_DATABASE_URL)',
  databaseSchema: '--database-schema',
  tlsCert: '--tls-cert',
  tlsKey: '--tls-key',
  trustedKeys: '--trusted-key',
  maxBodyBytes: '--max-body-bytes',
  maxBlobBytes: '--max-blob-bytes',
  dataRoot: '--data-root',
  adminToken: 'FLEETPRUNE_ADMIN_TOKEN',
  maxConcurrentJobs: '--max-concurrent-jobs',
};

export function parseServerConfig(input: ServerConfigInput): ServerConfig {
  const parsed = ServerConfigSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const message = parsed.error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') return `unknown setting ${issue.keys.join(', ')}`;
      const key = String(issue.path[0] ?? '');
      return `${SOURCE[key] ?? key}: ${issue.message}`;
    })
    .join('; ');
  throw new UserError(message);
}
