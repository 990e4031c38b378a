import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { parseDecimal } from '../../shared/util/numbers.ts';
import { coercedWholeNumber } from '../../shared/util/whole-number.ts';
import { UserError, zodIssueMessage } from '../../shared/util/errors.ts';
import { BrokerUrlSchema, LabelKeySchema, mqttCredential, withoutCredentials } from '../../shared/protocol/agent-config.ts';
import { bearerTokenProblem } from '../../shared/protocol/bearer-token.ts';
import { ServerUrlSchema } from '../../shared/protocol/server-url.ts';

const Port = coercedWholeNumber(0, 65535);
const ByteCount = z.coerce.number().int().positive();
/** A whole number in [min, max], one message for every way to miss it (a flag or an environment variable). */
const WholeNumber = (min: number, max: number) => {
  const error = `must be a whole number from ${min} to ${max}`;
  // As the flag's parser (parseInteger) reads it: a decimal number ("1e1" is 10 either way). Number() alone took 0x10 and 0b1 from a variable.
  const decimal = (value: unknown) => (typeof value === 'string' ? parseDecimal(value.trim()) : value);
  return z.preprocess(decimal, z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error }));
};

/**
 * A broker URL the server is given: it is logged and written into agent configs, so it must not
 * carry credentials (the server's identity logs in with FLEETPRUNE_MQTT_PASSWORD, and devices with
 * their own).
 */
const ServerBrokerUrl = BrokerUrlSchema.refine(
  withoutCredentials,
  'must not hold user:password@ (it is logged and written into agent configs; the server logs in with FLEETPRUNE_MQTT_PASSWORD)',
);

/**
 * A token goes in "Authorization: Bearer <token>" (and a gRPC header): visible ASCII, no spaces.
 * Names the first character that could not go there, never the token.
 */
const AdminToken = z.string().superRefine((token, ctx) => {
  const problem =
    token === ''
      ? 'set but empty; give it at least 16 characters, or unset it (the server then makes an admin token at its first start and prints it)'
      : token.length < 16
        ? 'must be at least 16 characters'
        : bearerTokenProblem(token);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});

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
      .refine((schema) => !schema.startsWith('pg_') && schema !== 'information_schema', "must not be one of PostgreSQL's own schemas (pg_…, information_schema)")
      .optional(),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    trustedKeys: z.array(z.string().min(1)).default([]),
    /** Start although enrolled devices pin another signing key than keys/signing.key (changed on purpose; they must be enrolled again). */
    acceptNewSigningKey: z.boolean().default(false),
    /** JSON request bodies (manifests, job requests with inline CSV). */
    maxBodyBytes: ByteCount.default(16 * 1024 * 1024),
    /**
     * An HTTP connection that moves no byte either way for this long is closed (a download whose
     * client stopped reading, an upload that stopped sending); gRPC connections are pinged this
     * often and closed when a ping goes unanswered (a frozen or vanished client).
     */
    idleTimeoutSeconds: coercedWholeNumber(1, 86_400).default(60),
    /** One uploaded blob (PUT /api/blobs/:sha256). */
    maxBlobBytes: ByteCount.default(1024 * 1024 * 1024),
    /** Pruning jobs may read server-side data files under this directory only. */
    dataRoot: z.string().min(1).transform((path) => resolve(path)).optional(),
    adminToken: AdminToken.optional(),
    maxConcurrentJobs: coercedWholeNumber(1, 64).default(1),
    /** Pruning jobs waiting for a worker (each holds its data set in memory); more are refused (429). */
    maxQueuedJobs: coercedWholeNumber(1, 1000).default(16),
    /** Device reports (answers, benchmarks) are kept this many days after they arrive; 0 keeps them for ever. */
    reportRetentionDays: coercedWholeNumber(0, 36_500).default(90),
    /** Each device's benchmark reports: this many at once (default REPORT_BURST in server/fleet/report-rate-limit.ts)... */
    reportBurst: WholeNumber(1, 10_000).optional(),
    /** ...then one more per this many milliseconds (default REPORT_REFILL_MS). */
    reportRefillMs: WholeNumber(1, 3_600_000).optional(),
    /** Embedded MQTT broker port (0 = ephemeral); ignored with mqttUrl (the CLI refuses --mqtt-port beside --mqtt-url). */
    mqttPort: Port.default(1883),
    /** Use this external MQTT 3.1.1 broker instead of the embedded one. */
    mqttUrl: ServerBrokerUrl.optional(),
    /** Password of the server's broker identity (external broker; default: random, needs mosquittoDir). */
    mqttPassword: mqttCredential(z.string().min(8, 'must be at least 8 characters')).optional(),
    /** Mosquitto: where the server writes its password and ACL files. */
    mosquittoDir: z.string().min(1).transform((path) => resolve(path)).optional(),
    /** Mosquitto: its pid_file; the server sends SIGHUP after rewriting the files. */
    mosquittoPidFile: z.string().min(1).transform((path) => resolve(path)).optional(),
    /** The server URL devices use (assignment manifest URLs, agent configs); default http(s)://<host>:<http port>. */
    publicUrl: ServerUrlSchema.transform((url) => url.replace(/\/+$/, '')).optional(),
    /** The broker URL written into agent configs; default --mqtt-url, or mqtt://<host>:<mqtt port>. */
    mqttPublicUrl: ServerBrokerUrl.optional(),
    /** The device label whose value is the `cohort` label of exported report metrics. */
    cohortLabel: LabelKeySchema.default('cohort'),
    /**
     * This server among several sharing one PostgreSQL database and data directory: it owns the
     * pruning jobs it accepted (only its own are failed when it restarts) and their work directory.
     */
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, dots, dashes or underscores')
      .default(() => hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'server'),
    /** GET /metrics: open to any scraper (none), or only with a viewer-or-better API token (token). */
    metricsAuth: z.enum(['none', 'token']).default('none'),
    /** Rollout analyses query this Prometheus; without it they run on the builtin provider. */
    prometheusUrl: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
    /**
     * Seconds after the server takes over the rollouts (starts, or is elected leader) during which
     * analysis measurements on Prometheus wait (see RolloutControllerOptions.startupGraceMs); 0: none.
     */
    analysisStartupGraceSeconds: WholeNumber(0, 600).default(30),
  })
  .superRefine((config, ctx) => {
    if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
      ctx.addIssue({ code: 'custom', path: [config.tlsCert === undefined ? 'tlsCert' : 'tlsKey'], message: 'give both --tls-cert and --tls-key, or neither' });
    }
    if (config.mqttUrl === undefined) {
      for (const key of ['mosquittoDir', 'mosquittoPidFile', 'mqttPassword'] as const) {
        if (config[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'only applies with --mqtt-url (an external broker)' });
      }
    } else if (config.mqttPassword === undefined && config.mosquittoDir === undefined) {
      ctx.addIssue({ code: 'custom', path: ['mqttPassword'], message: 'an external broker needs the server identity\'s password (FLEETPRUNE_MQTT_PASSWORD), or --mosquitto-dir so the server writes it' });
    }
    if (config.databaseSchema !== undefined && config.databaseUrl === undefined) {
      ctx.addIssue({ code: 'custom', path: ['databaseSchema'], message: 'only applies with --database-url (PostgreSQL); without it the server keeps its data in SQLite under --data-dir' });
    }
    if (config.mosquittoPidFile !== undefined && config.mosquittoDir === undefined) {
      ctx.addIssue({ code: 'custom', path: ['mosquittoPidFile'], message: 'needs --mosquitto-dir' });
    }
    // One port for two listeners fails the second with a bare EADDRINUSE, which names neither flag.
    const ports = [['httpPort', config.httpPort], ['grpcPort', config.grpcPort], ...(config.mqttUrl === undefined ? [['mqttPort', config.mqttPort] as const] : [])] as const;
    ports.forEach(([key, port], index) => {
      const earlier = ports.slice(0, index).find(([, other]) => port !== 0 && other === port);
      if (earlier) ctx.addIssue({ code: 'custom', path: [key], message: `${port} is also ${SOURCE[earlier[0]]}'s port; each listener needs its own` });
    });
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
  acceptNewSigningKey: '--accept-new-signing-key',
  maxBodyBytes: '--max-body-bytes',
  maxBlobBytes: '--max-blob-bytes',
  idleTimeoutSeconds: '--idle-timeout',
  dataRoot: '--data-root',
  adminToken: 'FLEETPRUNE_ADMIN_TOKEN',
  maxConcurrentJobs: '--max-concurrent-jobs',
  maxQueuedJobs: '--max-queued-jobs',
  reportRetentionDays: '--report-retention-days',
  reportBurst: '--report-burst (or FLEETPRUNE_REPORT_BURST)',
  reportRefillMs: '--report-refill-ms (or FLEETPRUNE_REPORT_REFILL_MS)',
  mqttPort: '--mqtt-port',
  mqttUrl: '--mqtt-url',
  mqttPassword: 'FLEETPRUNE_MQTT_PASSWORD',
  mosquittoDir: '--mosquitto-dir',
  mosquittoPidFile: '--mosquitto-pid-file',
  publicUrl: '--public-url',
  mqttPublicUrl: '--mqtt-public-url',
  cohortLabel: '--cohort-label',
  prometheusUrl: '--prometheus-url (or FLEETPRUNE_PROMETHEUS_URL)',
  analysisStartupGraceSeconds: '--analysis-startup-grace (or FLEETPRUNE_ANALYSIS_STARTUP_GRACE)',
  metricsAuth: '--metrics-auth',
  nodeId: '--node-id (or FLEETPRUNE_NODE_ID)',
};

export function parseServerConfig(input: ServerConfigInput): ServerConfig {
  const parsed = ServerConfigSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const message = parsed.error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') return `unknown setting ${issue.keys.join(', ')}`;
      const key = String(issue.path[0] ?? '');
      return `${SOURCE[key] ?? key}: ${zodIssueMessage(issue)}`;
    })
    .join('; ');
  throw new UserError(message);
}
