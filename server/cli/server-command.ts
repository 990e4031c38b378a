import type { Command } from 'commander';
import { createLogger } from '../../shared/util/log.ts';
import { parseServerConfig, type ServerConfigInput } from '../config/server-config.ts';
import { parseInteger } from '../../shared/cli/option-parsers.ts';
import { onStopSignals } from '../../shared/cli/stop-signals.ts';
import { UserError } from '../../shared/util/errors.ts';
import { goOnWhenOutputFails } from '../../shared/cli/run-cli.ts';

interface ServerFlags {
  dataDir: string;
  host?: string;
  httpPort?: number;
  grpcPort?: number;
  databaseUrl?: string;
  databaseSchema?: string;
  tlsCert?: string;
  tlsKey?: string;
  trustedKey: string[];
  acceptNewSigningKey?: boolean;
  maxBodyBytes?: number;
  maxBlobBytes?: number;
  idleTimeout?: number;
  dataRoot?: string;
  maxConcurrentJobs?: number;
  maxQueuedJobs?: number;
  reportRetentionDays?: number;
  reportBurst?: number;
  reportRefillMs?: number;
  prometheusUrl?: string;
  analysisStartupGrace?: number;
  mqttPort?: number;
  mqttUrl?: string;
  mosquittoDir?: string;
  mosquittoPidFile?: string;
  publicUrl?: string;
  mqttPublicUrl?: string;
  cohortLabel?: string;
  nodeId?: string;
  metricsAuth?: string;
}

export function registerServerCommand(program: Command): void {
  program
    .command('server')
    .description('run the control plane: model registry, artifact store, device fleet (MQTT), REST and gRPC APIs')
    .requiredOption('--data-dir <dir>', 'where the SQLite database, blobs and the server signing key live')
    .option('--host <address>', 'address to bind (default 0.0.0.0)')
    .option('--http-port <port>', 'REST port (0 = ephemeral; default 8080)', parseInteger)
    .option('--grpc-port <port>', 'gRPC port (0 = ephemeral; default 9090)', parseInteger)
    .option('--database-url <url>', 'use PostgreSQL instead of SQLite (or FLEETPRUNE_DATABASE_URL)')
    .option('--database-schema <schema>', 'PostgreSQL schema to use (created when missing)')
    .option('--tls-cert <file>', 'PEM certificate: serve HTTPS and gRPC over TLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--trusted-key <file>', 'a public key whose signed artifacts may be pushed (repeatable)', (value: string, all: string[]) => [...all, value], [])
    .option('--accept-new-signing-key', 'start although enrolled devices pin another signing key than DATA_DIR/keys/signing.key (it was changed on purpose: enroll those devices again)')
    .option('--max-body-bytes <n>', 'the largest request body (REST) and message (gRPC), and so the largest CSV a job takes, uploaded or by --server-path (default 16 MiB)', parseInteger)
    .option('--max-blob-bytes <n>', 'uploaded file limit (default 1 GiB)', parseInteger)
    .option('--idle-timeout <seconds>', 'close an HTTP connection stalled this long in a request or response (idle ones between requests are kept 65 s), a gRPC upload that sends nothing this long, and a gRPC connection that leaves a ping unanswered (pinged this often; default 60)', parseInteger)
    .option('--data-root <dir>', 'pruning jobs may read server-side data files under this directory')
    .option('--max-concurrent-jobs <n>', 'pruning jobs running at once (default 1)', parseInteger)
    .option('--max-queued-jobs <n>', 'pruning jobs waiting for a free worker; more are refused with 429 (default 16)', parseInteger)
    .option('--report-retention-days <n>', 'keep device reports (answers, benchmarks), answered assignments, fleet commands and the per-device evidence of finished rollouts this many days; 0 = for ever (default 90)', parseInteger)
    .option('--report-burst <n>', 'benchmark reports a device may send at once before it is limited; the ones beyond are dropped (or FLEETPRUNE_REPORT_BURST; 1-10000, default 10)', parseInteger)
    .option('--report-refill-ms <ms>', 'after its burst, a device may send one more benchmark report per this many milliseconds (or FLEETPRUNE_REPORT_REFILL_MS; 1-3600000, default 2000)', parseInteger)
    .option('--prometheus-url <url>', 'rollout analyses query this Prometheus (or FLEETPRUNE_PROMETHEUS_URL; default: the builtin provider)')
    .option('--analysis-startup-grace <seconds>', 'after the server starts or becomes the rollout leader, analysis measurements on Prometheus that fall due wait this long, so Prometheus has scraped the new process first (or FLEETPRUNE_ANALYSIS_STARTUP_GRACE; 0-600, 0 = off; default 30)', parseInteger)
    .option('--mqtt-port <port>', 'embedded MQTT broker port (0 = ephemeral; default 1883)', parseInteger)
    .option('--mqtt-url <url>', 'use this external MQTT broker (e.g. Mosquitto) instead of the embedded one; the server identity\'s password comes from FLEETPRUNE_MQTT_PASSWORD or is written by --mosquitto-dir')
    .option('--mosquitto-dir <dir>', 'with --mqtt-url: write Mosquitto\'s password and ACL files here (its password_file / acl_file)')
    .option('--mosquitto-pid-file <file>', 'with --mosquitto-dir: SIGHUP this Mosquitto after rewriting the files')
    .option('--public-url <url>', 'the server URL devices reach (agent configs, assignment URLs; default http(s)://<host>:<http port>)')
    .option('--mqtt-public-url <url>', 'the broker URL written into agent configs (default --mqtt-url, or mqtt://<host>:<mqtt port>)')
    .option('--node-id <id>', 'this server among several sharing a database and data directory (or FLEETPRUNE_NODE_ID; default the host name)')
    .option('--cohort-label <key>', 'device label exported as the cohort of report metrics (default cohort)')
    .option('--metrics-auth <mode>', 'GET /metrics: none (open, the default) or token (a viewer, operator or admin token, e.g. Prometheus\'s authorization credentials_file)')
    .addHelpText(
      'after',
      '\nEnvironment:\n  FLEETPRUNE_ADMIN_TOKEN  the admin token, at least 16 characters (set but empty is refused); without it, one is made at the first start and printed once\n',
    )
    .action(async (flags: ServerFlags) => {
      await runServer(flags);
    });
}

async function runServer(flags: ServerFlags): Promise<void> {
  // Not silently dropped: one who gives both may mean the external broker's port, which its URL holds.
  if (flags.mqttUrl !== undefined && flags.mqttPort !== undefined) {
    throw new UserError('--mqtt-port: only applies to the embedded broker; with --mqtt-url the broker\'s port is the one in that URL');
  }
  const config = parseServerConfig({
    dataDir: flags.dataDir,
    host: flags.host,
    httpPort: flags.httpPort,
    grpcPort: flags.grpcPort,
    databaseUrl: flags.databaseUrl ?? (process.env.FLEETPRUNE_DATABASE_URL || undefined),
    databaseSchema: flags.databaseSchema,
    tlsCert: flags.tlsCert,
    tlsKey: flags.tlsKey,
    trustedKeys: flags.trustedKey,
    acceptNewSigningKey: flags.acceptNewSigningKey === true,
    maxBodyBytes: flags.maxBodyBytes,
    maxBlobBytes: flags.maxBlobBytes,
    idleTimeoutSeconds: flags.idleTimeout,
    dataRoot: flags.dataRoot,
    // Empty is refused (too short), not taken as unset: `FLEETPRUNE_ADMIN_TOKEN=$(cat missing-file)` made the server
    // make and print a token of its own, or go on with the ones it had, without a word.
    adminToken: process.env.FLEETPRUNE_ADMIN_TOKEN,
    maxConcurrentJobs: flags.maxConcurrentJobs,
    maxQueuedJobs: flags.maxQueuedJobs,
    reportRetentionDays: flags.reportRetentionDays,
    reportBurst: flags.reportBurst ?? (process.env.FLEETPRUNE_REPORT_BURST || undefined),
    reportRefillMs: flags.reportRefillMs ?? (process.env.FLEETPRUNE_REPORT_REFILL_MS || undefined),
    prometheusUrl: flags.prometheusUrl ?? (process.env.FLEETPRUNE_PROMETHEUS_URL || undefined),
    analysisStartupGraceSeconds: flags.analysisStartupGrace ?? (process.env.FLEETPRUNE_ANALYSIS_STARTUP_GRACE || undefined),
    nodeId: flags.nodeId ?? (process.env.FLEETPRUNE_NODE_ID || undefined),
    mqttPort: flags.mqttPort,
    mqttUrl: flags.mqttUrl,
    mqttPassword: process.env.FLEETPRUNE_MQTT_PASSWORD || undefined,
    mosquittoDir: flags.mosquittoDir,
    mosquittoPidFile: flags.mosquittoPidFile,
    publicUrl: flags.publicUrl,
    mqttPublicUrl: flags.mqttPublicUrl,
    cohortLabel: flags.cohortLabel,
    metricsAuth: flags.metricsAuth as ServerConfigInput['metricsAuth'],
  });
  const log = createLogger('server');
  // A service from here on: output that cannot be written (its ready line) does not end it.
  goOnWhenOutputFails();
  // Loaded once the flags are good: a start refused for them does not pay for loading the server.
  const { startServer } = await import('../app/start-server.ts');
  const server = await startServer(config, { log });
  if (server.createdAdminToken) {
    process.stderr.write(`fleetprune: created the admin token (shown only this once; store it now): ${server.createdAdminToken}\n`);
  }
  // Listening before the ready line: a supervisor (or a test) may stop the server as soon as it reads it.
  const closed = new Promise<void>((resolve) => {
    const offSignals = onStopSignals((signal) => {
      log.info({ signal }, 'shutting down');
      offSignals();
      server.close().then(resolve, resolve);
    });
  });
  process.stdout.write(`${server.line}\n`);
  log.info({ listeners: server.listeners.map(({ name, port }) => ({ name, port })), dataDir: config.dataDir }, 'server ready');
  await closed;
}
