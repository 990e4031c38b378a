import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { Server as GrpcServer } from '@grpc/grpc-js';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { Mutex } from '../../shared/util/mutex.ts';
import { NotARegularFileError, readRegularFile } from '../../shared/util/read-regular-file.ts';
import { basename, dirname, join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { UserError, errorMessage, underFlag } from '../../shared/util/errors.ts';
import { assertExistingDirectory, ensureWritableDirectory, removeEmptyTree } from '../../shared/util/fs-checks.ts';
import { acquirePidLock, type PidLock } from '../../shared/util/pid-lock.ts';
import { createLogger, type Logger } from '../../shared/util/log.ts';
import { BlobStore } from '../artifacts/blob-store.ts';
import { checkPinnedKey, loadOrCreateServerKey } from '../artifacts/server-signing-key.ts';
import { TrustedKeys } from '../artifacts/trusted-keys.ts';
import { AuditService } from '../auth/audit-service.ts';
import { TokenService } from '../auth/token-service.ts';
import type { ServerConfig } from '../config/server-config.ts';
import { accessByPath } from '../grpc/grpc-access.ts';
import { tolerantService, type MessageLimit } from '../grpc/malformed-messages.ts';
import { grpcAuthInterceptor } from '../grpc/grpc-auth-interceptor.ts';
import { createHttpApp } from '../http/create-http-app.ts';
import { JobService } from '../jobs/job-service.ts';
import { ServerMetrics } from '../metrics/server-metrics.ts';
import { RegistryService } from '../registry/registry-service.ts';
import { openStore, SQLITE_FILE } from '../store/open-store.ts';
import type { Migration } from '../store/migrations/migration.ts';
import type { SqlExecutor, SqlParam } from '../store/sql-engine.ts';
import { coreModules } from './core-modules.ts';
import { listenGrpc, listenHttp, listeningLine, reachableHost, routeGrpcLogs, type TlsFiles } from './listeners.ts';
import { checkListenHost } from '../../shared/util/listen-host.ts';
import { checkForcedBackend } from '../../shared/model/tfjs-backend-choice.ts';
import type { ServerContext } from './server-context.ts';
import type { Listener, ServerModule } from './server-module.ts';
import type { ReportHistory } from '../metricproviders/report-history.ts';
import type { FleetPort } from '../rollout/fleet-port.ts';
import { leadershipFor, rolloutLeaderLock } from '../rollout/leader-election.ts';
import { stopModelChecks } from '../artifacts/model-file-check.ts';
import { rolloutModule } from '../rollout/rollout-module.ts';
import type { DeviceReturn } from '../rollout/rollout-state.ts';
import { RolloutHolds } from '../rollout/rollout-holds.ts';
import { createFleet, type FleetHooks } from '../fleet/fleet-module.ts';
import { FleetStore } from '../fleet/fleet-store.ts';
import { StalledStreams, type StalledStreamLimits } from './stalled-streams.ts';

export const SERVER_VERSION = '0.1.0';

export interface StartServerOptions {
  log?: Logger;
  /**
   * TEST ONLY: the device fleet and report history rollouts run against instead of the fleet
   * module's (an in-memory fleet, for rollout API tests without devices). Production never sets it.
   */
  testOnlyRolloutFleet?: { fleet: FleetPort; reports?: ReportHistory };
  /** PostgreSQL: how often a standby tries to take the leader lock (default 2 s; tests shorten it). */
  leaderPollMs?: number;
  /** How long the start waits for the first takeover (an external broker that is down) before going on (default 15 s; tests shorten it). */
  leaderStartWaitMs?: number;
  /** How often old device reports are deleted and old rollout evidence trimmed (--report-retention-days; default hourly; tests shorten it). */
  reportSweepMs?: number;
  /** How often the devices this server exports series for are checked against the store's live ones (default EXPORT_RECONCILE_MS in server/fleet/fleet-module.ts; tests shorten it). */
  exportReconcileMs?: number;
  /** The silent-device sweep's round and least wait (tests shorten them). */
  silentDevices?: { everyMs?: number; minMs?: number };
  /** Each device's report rate limit, over --report-burst and --report-refill-ms field by field (defaults: burst REPORT_BURST, refill REPORT_REFILL_MS in server/fleet/report-rate-limit.ts; tests shorten the refill). */
  reportRateLimit?: { burst?: number; refillMs?: number };
  /** Each device's answer rate limit (defaults: ANSWER_BURST, ANSWER_REFILL_MS in server/fleet/report-rate-limit.ts; tests shorten them). */
  answerRateLimit?: { burst?: number; refillMs?: number };
  /** PostgreSQL: job lease renewal period and staleness (defaults 15 s and 90 s; tests shorten them). */
  jobLeases?: { renewMs: number; staleSeconds: number };
  /** When an event stream whose client stopped reading is ended (defaults: DEFAULT_STALLED_STREAM_LIMITS in stalled-streams.ts; tests shrink them). */
  stalledStreamLimits?: Partial<StalledStreamLimits>;
}

export interface RunningServer {
  ctx: ServerContext;
  /** The composed subsystems, in start order. */
  modules: readonly ServerModule[];
  listeners: Listener[];
  /** The `listening ...` start-up line. */
  line: string;
  port(name: string): number;
  /** A freshly created admin token, when this start created one (shown once). */
  createdAdminToken: string | null;
  close(): Promise<void>;
}

/**
 * Opens storage, builds the services and modules, binds the listeners. What the user can get
 * wrong (TLS files, --host, --data-root, --data-dir) is checked before storage is touched, and a
 * start that fails closes everything it opened.
 */
export async function startServer(config: ServerConfig, options: StartServerOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger('server');
  routeGrpcLogs(log);
  const tls = await readTls(config);
  if (tls) warnAboutCertificateDates(tls.cert, config.tlsCert!, log);
  await checkListenHost(config.host, '--host');
  // Read by every pruning job's worker: a bad value (or a backend not installed) would fail each job, stored as failed, rather than the start.
  checkForcedBackend();
  if (config.dataRoot !== undefined) await assertExistingDirectory(config.dataRoot, '--data-root');
  // The directories this start creates: a start that fails removes those still empty, so one
  // refused before it stored anything (an unreachable database, a bad --mosquitto-dir) leaves none.
  const created: string[] = [];
  const removeCreated = async () => {
    for (const dir of created.reverse()) await removeEmptyTree(dir);
  };
  let lock: PidLock | undefined;
  try {
    const ensure = async (dir: string, flag: string) => {
      const made = await ensureWritableDirectory(dir, flag);
      if (made !== undefined) created.push(made);
    };
    await ensure(config.dataDir, '--data-dir');
    // Its entries the server writes: a file (or an unwritable directory) there is the user's to fix.
    for (const entry of ['blobs', 'jobs']) await ensure(join(config.dataDir, entry), '--data-dir');
    // Where the broker's password and ACL files go: else the broker link retries for ever on a file there.
    if (config.mosquittoDir !== undefined) await ensure(config.mosquittoDir, '--mosquitto-dir');
    lock = config.databaseUrl ? undefined : lockSqliteDataDir(config.dataDir);
  } catch (error) {
    await removeCreated();
    throw error;
  }
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch((error) => log.error({ err: error }, 'shutdown step failed'));
    lock?.release(); // last: the data dir is free once everything using it has closed
  };
  try {
    const store = await openStore(
      config.databaseUrl
        ? { engine: 'postgres', databaseUrl: config.databaseUrl, schema: config.databaseSchema }
        : { engine: 'sqlite', dataDir: config.dataDir },
      // SQLite's one server holds the data dir (the lock above); on PostgreSQL an older server may
      // still run on the database, and would go on writing by its own rules under the new schema.
      { log, ...(config.databaseUrl ? { beforeUpgrade: refuseUpgradeUnderRunningServer } : {}) },
    );
    cleanups.push(() => store.close());
    const blobs = new BlobStore(join(config.dataDir, 'blobs'));
    await blobs.open();
    const signingKey = await loadOrCreateServerKey(config.dataDir, async () => (await new FleetStore(store).repos.devices.count()).enrolled, log);
    checkPinnedKey(signingKey, await new FleetStore(store).repos.devices.pinningOtherKeys(signingKey.keyId), config.acceptNewSigningKey, log);
    const trustedKeys = await underFlag('--trusted-key', () => TrustedKeys.load(config.trustedKeys, signingKey.publicKey));
    // /metrics answers while the database does not, saying so in fleetprune_store_up.
    const metrics = new ServerMetrics({ store: { probe: () => store.engine.get('SELECT 1 AS ok'), log: log.child({ component: 'metrics' }) } });
    const tokens = new TokenService(store, { tokenHolder: (id) => new FleetStore(store).repos.devices.holderOfToken(id) });
    const holds = new RolloutHolds(store.engine);
    const registry = new RegistryService(store, { retirementBlocker: (model, version, db) => holds.ofCandidate(model, version, db) });
    const jobs = new JobService({
      store,
      registry,
      blobs,
      signingKey: signingKey.privateKey,
      signingPublicKey: signingKey.publicKey,
      workDir: join(config.dataDir, 'jobs', config.nodeId),
      dataDir: config.dataDir,
      node: config.nodeId,
      dataRoot: config.dataRoot,
      maxDataBytes: config.maxBodyBytes,
      maxConcurrentJobs: config.maxConcurrentJobs,
      maxQueuedJobs: config.maxQueuedJobs,
      metrics,
      log,
      ...(options.jobLeases ? { leaseRenewMs: options.jobLeases.renewMs, leaseStaleSeconds: options.jobLeases.staleSeconds } : {}),
    });
    // A port given is the URL's from the start; an ephemeral one (0) once the listener is bound,
    // after the modules start: a rollout the leader drives meanwhile (a revert at takeover) waits.
    let httpPort: number | null = config.httpPort === 0 ? null : config.httpPort;
    let urlKnown = () => {};
    const publicUrlKnown = config.publicUrl || httpPort !== null ? Promise.resolve() : new Promise<void>((resolve) => (urlKnown = resolve));
    const publicUrl = () => {
      if (config.publicUrl) return config.publicUrl;
      if (httpPort === null) throw new Error('the public URL is not known before the HTTP listener is bound');
      return `${tls ? 'https' : 'http'}://${reachableHost(config.host)}:${httpPort}`;
    };
    const ctx: ServerContext = { config, log, store, blobs, signingKey, trustedKeys, tokens, audit: new AuditService(store), registry, jobs, metrics, publicUrl, publicUrlKnown, stalledStreams: new StalledStreams({ metrics, log }, options.stalledStreamLimits), fleetChanges: new Mutex() };

    // The device fleet (MQTT, devices, assignments) feeds the rollouts: its FleetPort carries their
    // assignments, its stored reports are the builtin provider's history, and a device coming
    // back online lets the controller retry what it missed. One leader per database drives rollouts
    // and, with an external broker, holds the broker connection.
    let deviceOnline: (deviceId: string, cause?: DeviceReturn) => void = () => {};
    let benchmarkFailed: (report: AssignmentReport) => void = () => {};
    let answered: NonNullable<FleetHooks['onAnswer']> = () => {};
    const leadership = leadershipFor(store.engine, log, { pollMs: options.leaderPollMs, node: config.nodeId, startWaitMs: options.leaderStartWaitMs });
    const hooks: FleetHooks = {
      onDeviceOnline: (deviceId) => deviceOnline(deviceId),
      onBenchmarkFailed: (report) => benchmarkFailed(report),
      onAnswer: (deviceId, actionId, result) => answered(deviceId, actionId, result),
      onSlotsChanged: (deviceId) => deviceOnline(deviceId, 'answered'),
      onDeviceRevoked: (deviceId) => deviceOnline(deviceId, 'revoked'),
    };
    const fleet = createFleet(ctx, hooks, leadership, { reportSweepMs: options.reportSweepMs, reportRateLimit: reportRateLimit(config, options), ...(options.answerRateLimit ? { answerRateLimit: options.answerRateLimit } : {}), ...(options.exportReconcileMs !== undefined ? { exportReconcileMs: options.exportReconcileMs } : {}), ...(options.silentDevices ? { silentDevices: options.silentDevices } : {}) });
    const testFleet = options.testOnlyRolloutFleet;
    const rollouts = rolloutModule(ctx, {
      fleet: testFleet?.fleet ?? fleet.fleetPort,
      reports: testFleet?.reports ?? fleet.reportHistory,
      ...(testFleet?.reports ? {} : { withdrawals: fleet.withdrawals }),
      leadership,
      ...(fleet.leadershipHandlers ? { beforeRollouts: fleet.leadershipHandlers, brokerConnected: fleet.brokerConnected } : {}),
      ...(options.reportSweepMs !== undefined ? { retentionSweepMs: options.reportSweepMs } : {}),
    });
    deviceOnline = (deviceId, cause) => {
      rollouts.deviceOnline(deviceId, cause).catch((error: unknown) => log.warn({ err: error, deviceId }, 'rollout retry for a device back online failed'));
    };
    answered = (deviceId, actionId, result) => {
      rollouts.deviceAnswered(deviceId, actionId, result).catch((error: unknown) => log.warn({ err: errorMessage(error), deviceId }, 'recording a late answer in its rollout failed'));
    };
    benchmarkFailed = (report) => {
      rollouts
        .benchmarkFailed(report.deviceId, report.assignmentId, report.reason ?? 'no reason given', report.failedRole ?? 'candidate')
        .catch((error: unknown) => log.warn({ err: error, deviceId: report.deviceId }, 'failing the rollout of a candidate a device could not benchmark failed'));
    };
    const modules = [...coreModules(ctx, fleet), rollouts];
    let ready = false;
    const app = createHttpApp({
      routes: modules.flatMap((module) => module.routes ?? []),
      pages: modules.flatMap((module) => (module.pages ? [module.pages] : [])),
      tokens,
      metrics,
      log,
      maxBodyBytes: config.maxBodyBytes,
      metricsNeedToken: config.metricsAuth === 'token',
      version: SERVER_VERSION,
      isReady: () => ready,
      // The leader is ready as the leader once it drives the rollouts: elected but still taking them
      // over, or its takeover failed, it refuses rollout commands like a standby.
      readiness: { storeUp: () => metrics.storeUp(), leader: async () => ({ ...(await leadership.status()), driving: rollouts.drivingRollouts() }) },
    });
    const grpcBindings = modules.flatMap((module) => module.grpcServices ?? []);
    const grpc = new GrpcServer({
      'grpc.max_receive_message_length': grpcMaxReceiveBytes(config.maxBodyBytes),
      'grpc.max_concurrent_streams': GRPC_MAX_CONCURRENT_STREAMS,
      // A client whose process froze or whose host vanished leaves the ping unanswered: its
      // connection, and any download stream stuck on its flow-control window, is released.
      'grpc.keepalive_time_ms': config.idleTimeoutSeconds * 1000,
      'grpc.keepalive_timeout_ms': Math.min(GRPC_PING_ANSWER_MS, config.idleTimeoutSeconds * 1000),
      // Token and role are checked from each call's metadata, before its message is read.
      interceptors: [grpcAuthInterceptor({ tokens, metrics, log }, accessByPath(grpcBindings))],
    });
    const messageLimit = grpcMessageLimit(config.maxBodyBytes);
    for (const binding of grpcBindings) grpc.addService(tolerantService(binding.service, messageLimit), binding.implementation);

    // A pushed model's check under way is ended with its process (after the listeners close, before the store).
    cleanups.push(async () => stopModelChecks());
    const listeners: Listener[] = [];
    cleanups.push(async () => {
      for (const listener of [...listeners].reverse()) await listener.close();
    });
    // Modules start first (e.g. interrupted jobs are failed before any request can arrive).
    const moduleListeners: Listener[] = [];
    for (const module of modules) {
      if (module.stop) cleanups.push(() => module.stop!());
      const opened = await module.start?.();
      if (opened) moduleListeners.push(...opened);
    }
    listeners.push(...moduleListeners);
    // Each listener joins `listeners` as soon as it is bound, so a later failure closes it too.
    const http = await listenHttp(app, config.host, config.httpPort, tls, config.idleTimeoutSeconds * 1000);
    httpPort = http.port;
    urlKnown();
    listeners.unshift(http);
    listeners.splice(1, 0, await listenGrpc(grpc, config.host, config.grpcPort, tls));
    // Only a start that succeeded makes the first admin token: one made by a start that then
    // failed would never be shown, and no later start would make another.
    const createdAdminToken = await tokens.bootstrapAdmin(config.adminToken, (message) => log.warn(message));
    ready = true;
    let closing: Promise<void> | undefined;
    return {
      ctx,
      modules,
      listeners,
      line: listeningLine(listeners),
      port: (name) => listeners.find((listener) => listener.name === name)?.port ?? -1,
      createdAdminToken,
      close: () => (closing ??= cleanup()),
    };
  } catch (error) {
    await cleanup();
    await removeCreated();
    throw error;
  }
}

/**
 * Refuses to migrate a PostgreSQL database while another server runs on it as the rollout leader
 * (an older version, since this one would find nothing to migrate otherwise): every server on the
 * database must be stopped before an upgrade that migrates it (docs/deployment.md, "Upgrading").
 */
async function refuseUpgradeUnderRunningServer(pending: readonly Migration[], tx: SqlExecutor): Promise<void> {
  const lock = await rolloutLeaderLock((sql, params) => tx.get(sql, params as SqlParam[]));
  if (!lock.held) return;
  const names = pending.map((migration) => `${migration.domain}:${migration.version}`).join(', ');
  throw new UserError(
    `another fleetprune server${lock.leader ? ` (${lock.leader})` : ''} runs on this database as the rollout leader, and this version would migrate the database under it (${names}); ` +
      'stop every fleetprune server on the database first, then start this version (docs/deployment.md, "Upgrading")',
  );
}

/**
 * The database file a running server has open (Linux: /proc/PID/fd; a server keeps it open from
 * just after it takes the lock until it stops): its path as that process sees it, and the file
 * itself (device and inode, through the link, so a bind mount or another mount namespace still
 * names the same file). Undefined when that cannot be told (another OS, another user's process,
 * a server still starting).
 */
function databaseOfServer(pid: number): { path: string; dev: number; ino: number } | undefined {
  try {
    const fdDir = `/proc/${pid}/fd`;
    for (const fd of readdirSync(fdDir)) {
      try {
        const path = readlinkSync(join(fdDir, fd));
        if (basename(path) !== SQLITE_FILE) continue;
        const { dev, ino } = statSync(join(fdDir, fd));
        return { path, dev, ino };
      } catch {
        continue; // closed meanwhile
      }
    }
  } catch {
    // not readable
  }
  return undefined;
}

/**
 * The refusal for a lock naming a server that has another database file open than this data
 * dir's: this data dir is a copy of that server's (a backup taken while it ran), lock included.
 * Files are told apart by device and inode, not by path: one data dir reached by two paths (a
 * bind mount, a container's volume) is the same file. Null when it cannot be told.
 */
function copiedLock(dataDir: string, holder: number | undefined): UserError | null {
  const its = holder === undefined ? undefined : databaseOfServer(holder);
  if (its === undefined) return null;
  let ours: { dev: number; ino: number };
  try {
    ours = statSync(join(dataDir, SQLITE_FILE));
  } catch {
    return null;
  }
  if (ours.dev === its.dev && ours.ino === its.ino) return null;
  return new UserError(
    `--data-dir ${dataDir} holds the server.lock of process ${holder}, a fleetprune server running on ${dirname(its.path)}: this data dir is a copy of that server's, its lock copied with it; ` +
      `remove ${join(dataDir, 'server.lock')} and start again`,
  );
}

/**
 * `<data-dir>/server.lock`: one server process per SQLite data dir. Two would each run the
 * rollout controller, the job queue and blob GC on one database. With PostgreSQL, servers share
 * the data dir on purpose (a standby, docs/rollout-spec.md; the database's leader lock elects one),
 * so there is no lock. A lock left by a server killed with -9 is taken over.
 */
function lockSqliteDataDir(dataDir: string): PidLock {
  return acquirePidLock(join(dataDir, 'server.lock'), {
    busy: (holder) =>
      copiedLock(dataDir, holder) ??
      new UserError(`--data-dir ${dataDir} is in use by another fleetprune server${holder === undefined ? '' : ` (process ${holder})`}; stop it or choose another --data-dir (only servers on PostgreSQL share a data dir)`),
    failed: (error) => new UserError(`--data-dir: cannot lock ${dataDir} (${errorMessage(error)})`, { cause: error }),
    notALock: (path, found) => new UserError(`--data-dir: cannot lock ${dataDir} (${path} is ${found}, not a fleetprune lock, left as it is); remove it or choose another --data-dir`),
    processIdentity: true,
  });
}

/** The largest --tls-cert or --tls-key read (a PEM chain is a few kilobytes). */
const MAX_TLS_FILE_BYTES = 1024 * 1024;

/** Reads --tls-cert and --tls-key and checks they are a PEM certificate and its private key. */
async function readTls(config: ServerConfig): Promise<TlsFiles | null> {
  if (!config.tlsCert || !config.tlsKey) return null;
  const read = async (path: string, flag: string) => {
    try {
      // A FIFO or a device (/dev/zero) is refused without reading it, a file over 1 MiB before it is read.
      return Buffer.from(await readRegularFile(path, MAX_TLS_FILE_BYTES));
    } catch (error) {
      if (error instanceof NotARegularFileError && error.code === undefined) throw new UserError(`${flag}: ${error.message}`);
      throw new UserError(`${flag}: cannot read ${path} (${errorMessage(error)})`);
    }
  };
  const tls = { cert: await read(config.tlsCert, '--tls-cert'), key: await read(config.tlsKey, '--tls-key') };
  if (!tls.cert.includes('-----BEGIN CERTIFICATE-----')) throw new UserError(`--tls-cert: ${config.tlsCert} is not a PEM certificate`);
  try {
    new X509Certificate(tls.cert);
  } catch (error) {
    throw new UserError(`--tls-cert: ${config.tlsCert} is not a PEM certificate (${errorMessage(error)})`);
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(tls.key.toString('latin1'))) {
    throw new UserError(`--tls-key: ${config.tlsKey} is encrypted with a passphrase, which the server cannot be given: write it out unencrypted (openssl pkey -in KEY -out KEY.plain) and keep it mode 0600`);
  }
  try {
    createPrivateKey(tls.key);
  } catch (error) {
    throw new UserError(`--tls-key: ${config.tlsKey} is not a PEM private key (${errorMessage(error)})`);
  }
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (error) {
    throw new UserError(`--tls-cert/--tls-key: not a usable certificate and key (${errorMessage(error)})`);
  }
  return tls;
}

/** A certificate that expires within this many days is warned about at every start. */
const CERTIFICATE_EXPIRY_WARNING_DAYS = 14;

/**
 * Warns at the start when --tls-cert has expired, is not valid yet, or expires within two weeks:
 * the server would serve it all the same, and every client (CLI, agents, Prometheus) refuse it.
 */
export function warnAboutCertificateDates(cert: Buffer, path: string, log: Pick<Logger, 'warn'>, now = new Date()): void {
  const certificate = new X509Certificate(cert);
  const validFrom = new Date(certificate.validFrom);
  const validTo = new Date(certificate.validTo);
  const days = (validTo.getTime() - now.getTime()) / 86_400_000;
  if (validTo <= now) {
    log.warn({ cert: path, validTo: validTo.toISOString() }, `--tls-cert: ${path} expired on ${validTo.toISOString()}: clients (the CLI, agents, Prometheus) refuse it; replace it and restart`);
  } else if (validFrom > now) {
    log.warn({ cert: path, validFrom: validFrom.toISOString() }, `--tls-cert: ${path} is not valid before ${validFrom.toISOString()} (is this host's clock right?): clients refuse it until then`);
  } else if (days < CERTIFICATE_EXPIRY_WARNING_DAYS) {
    log.warn({ cert: path, validTo: validTo.toISOString() }, `--tls-cert: ${path} expires on ${validTo.toISOString()}, in ${Math.floor(days)} day(s): replace it and restart before then`);
  }
}

/** How long a gRPC client has to answer the server's keep-alive ping (grpc-js's default). */
const GRPC_PING_ANSWER_MS = 20_000;
/**
 * Calls one gRPC connection may have open at once (HTTP/2's recommended minimum; a client queues
 * the rest). Without it Node allows 2^32-1, so one connection could hold that many messages of up
 * to the receive cap in memory.
 */
const GRPC_MAX_CONCURRENT_STREAMS = 100;
/** Room in a gRPC message for the fields besides the one --max-body-bytes limits (StartPrune's name, label, options_json...). */
const GRPC_MESSAGE_HEADROOM_BYTES = 1024 * 1024;
/** The receive cap before it followed --max-body-bytes; a smaller --max-body-bytes does not shrink it. */
const GRPC_MIN_RECEIVE_BYTES = 8 * 1024 * 1024;

/**
 * The gRPC server's receive cap: a StartPrune csv of up to --max-body-bytes (as REST accepts) plus
 * the message's other fields, so a csv just over the limit reaches the handler and is refused
 * naming --max-body-bytes rather than by the transport. Capped at protobuf's 2 GiB message limit.
 */
function grpcMaxReceiveBytes(maxBodyBytes: number): number {
  return Math.min(Math.max(GRPC_MIN_RECEIVE_BYTES, maxBodyBytes + GRPC_MESSAGE_HEADROOM_BYTES), 2 ** 31 - 1);
}

/**
 * The largest message each gRPC method takes: --max-body-bytes, as REST's largest body. StartPrune
 * and StartRollout have none of their own: their handlers refuse a csv or spec over the limit
 * naming the field (which the CLI names as --data or --spec); UploadBlob's chunks are limited by
 * the transport's cap and the blob by --max-blob-bytes, as REST's uploads are.
 */
function grpcMessageLimit(maxBodyBytes: number): MessageLimit {
  const fieldChecked = new Set(['/fleetprune.v1.Blobs/UploadBlob', '/fleetprune.v1.Jobs/StartPrune', '/fleetprune.v1.Rollouts/StartRollout']);
  return (path) => (fieldChecked.has(path) ? null : { bytes: maxBodyBytes, option: '--max-body-bytes' });
}

/** Each device's report bucket: --report-burst and --report-refill-ms, each overridden by StartServerOptions.reportRateLimit (tests); unset ones keep the fleet's defaults. */
function reportRateLimit(config: ServerConfig, options: StartServerOptions): { burst?: number; refillMs?: number } {
  return {
    ...(config.reportBurst === undefined ? {} : { burst: config.reportBurst }),
    ...(config.reportRefillMs === undefined ? {} : { refillMs: config.reportRefillMs }),
    ...options.reportRateLimit,
  };
}
