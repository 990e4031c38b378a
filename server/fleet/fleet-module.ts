import { lostModelFile } from '../artifacts/lost-model-file.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { reachableHost } from '../app/listeners.ts';
import type { Broker } from '../broker/broker.ts';
import { BrokerRefusedConnection, MosquittoAuthFilesError } from '../broker/external-broker.ts';
import { MosquittoNotRunning } from '../broker/mosquitto-reload.ts';
import type { ServerConfig } from '../config/server-config.ts';
import type { ServerContext } from '../app/server-context.ts';
import type { ServerModule } from '../app/server-module.ts';
import { reportRetention } from './report-retention.ts';
import { SilentDeviceSweep } from './silent-device-sweep.ts';
import { RegistryModelStatus } from '../rollout/registry-model-status.ts';
import { RolloutHolds } from '../rollout/rollout-holds.ts';
import { ReportMetricsExporter, type ExportedSeriesWithdrawals } from '../metricproviders/report-metrics-exporter.ts';
import type { ReportHistory } from '../metricproviders/report-history.ts';
import type { FleetPort, LateDeviceAnswer } from '../rollout/fleet-port.ts';
import type { Leadership, LeadershipHandlers } from '../rollout/leader-election.ts';
import { fleetGrpcServices } from '../grpc/fleet-grpc.ts';
import { fleetRoutes } from '../http/routes/fleet-routes.ts';
import { AssignmentOutcomes } from './assignment-outcomes.ts';
import { AssignmentPublisher } from './assignment-publisher.ts';
import { AssignmentService } from './assignment-service.ts';
import { DeviceService } from './device-service.ts';
import { createFleetBroker } from './fleet-broker.ts';
import { BROKER_CREDENTIALS_STALE, fleetCounters } from './fleet-metrics.ts';
import { LeaderOnlyFleetGate, OPEN_FLEET_GATE, type FleetGate } from './fleet-gate.ts';
import { FleetReceiver } from './fleet-receiver.ts';
import { clearRetainedMessage, clearRetainedStatus } from './fleet-publisher.ts';
import { FleetStore } from './fleet-store.ts';
import { StoreCredentialStore } from './store-credential-store.ts';
import { restoreExports } from './serving-totals.ts';
import { forgetRevokedDevices } from './export-reconcile.ts';
import { StoreFleetIngest } from './store-fleet-ingest.ts';
import { StoreFleetPort, lateAnswerOf } from './store-fleet-port.ts';
import { StoreReportHistory } from './store-report-history.ts';
import { ANSWER_BURST, ANSWER_REFILL_MS, ReportRateLimit } from './report-rate-limit.ts';
import { StateThrottle } from './state-throttle.ts';

/** The fleet subsystem: its server module, and the ports other subsystems (rollouts, analysis) use. */
export interface Fleet {
  module: ServerModule;
  devices: DeviceService;
  assignments: AssignmentService;
  fleetPort: FleetPort;
  reportHistory: ReportHistory;
  /** The device series exporter's removals (the builtin provider's staleness markers). */
  withdrawals: ExportedSeriesWithdrawals;
  /**
   * External broker with PostgreSQL: the broker connection follows the rollout leadership (connect
   * when elected, before the controller starts; disconnect when deposed). Undefined otherwise.
   */
  leadershipHandlers?: LeadershipHandlers;
  /** Whether the server's broker connection is up now (the embedded broker: always). */
  brokerConnected: () => boolean;
}

export interface FleetHooks {
  /** A device announced itself online. */
  onDeviceOnline?: (deviceId: string) => void;
  onBenchmarkFailed?: (report: AssignmentReport) => void;
  /** A device answered an assignment or command (`actionId`) that nothing waited for any more: delivered or refused, as a rollout counts it. */
  onAnswer?: (deviceId: string, actionId: string, result: LateDeviceAnswer) => void;
  /**
   * A device's answer changed the models it holds (waited for or not): it takes what it is sent
   * now, and may have taken the activation a rollout's candidate waited behind (StoreFleetPort).
   */
  onSlotsChanged?: (deviceId: string) => void;
  /** A device was revoked through this server: a rollout waiting for it to come back goes on without it. */
  onDeviceRevoked?: (deviceId: string) => void;
}

/**
 * Devices, enrollment, assignments and the MQTT side of the server: the broker (embedded on
 * --mqtt-port, or external at --mqtt-url), the receiver that stores what devices send, and the
 * publisher. Starts before the HTTP listener: devices are marked offline (they announce
 * themselves again), the receiver subscribes, the broker starts, and every device's current
 * assignment is republished (an embedded broker loses retained messages on restart).
 *
 * With an external broker and PostgreSQL several servers may share the database, but a broker
 * identity allows one connection: only the rollout leader connects (doing the above when
 * elected); the others are standbys that serve reads and refuse fleet changes until they lead.
 */
export function createFleet(ctx: ServerContext, hooks: FleetHooks = {}, leadership?: Leadership, options: { reportSweepMs?: number; deliveryTimeoutMs?: number; /** A device's heartbeats and statuses are stored at most once each per this (default 1 s). */ minStateIntervalMs?: number; /** Each device's report bucket (defaults REPORT_BURST, REPORT_REFILL_MS; tests shorten the refill). */ reportRateLimit?: { burst?: number; refillMs?: number }; /** Each device's answer bucket (defaults ANSWER_BURST, ANSWER_REFILL_MS; tests shorten them). */ answerRateLimit?: { burst?: number; refillMs?: number }; /** How often the exported devices are checked against the store's live ones (default EXPORT_RECONCILE_MS). */ exportReconcileMs?: number; /** The silent-device sweep's round and least wait (defaults SILENT_SWEEP_MS, SILENT_MIN_MS; tests shorten them). */ silentDevices?: { everyMs?: number; minMs?: number } } = {}): Fleet {
  const fleet = new FleetStore(ctx.store);
  const counters = fleetCounters(ctx.metrics.registry);
  const { broker, port, connected } = createFleetBroker(ctx.config, new StoreCredentialStore(fleet), ctx.log.child({ component: 'broker' }), counters.denied, () => {
    silent.heardNothingUntilNow(); // what devices sent while the connection was down was not heard
    return publisher.republishRetained();
  });
  const exporter = new ReportMetricsExporter(ctx.metrics.registry, ctx.signingKey.keyId);
  const outcomes = new AssignmentOutcomes();
  const ingest = new StoreFleetIngest({
    fleet,
    cohortLabel: ctx.config.cohortLabel,
    outcomes,
    onBenchmark: (reports) => exporting() && reports.forEach((report) => exporter.observe(report)),
    onDeviceOnline: hooks.onDeviceOnline,
    onBenchmarkFailed: hooks.onBenchmarkFailed,
    onAnswer: (report) => {
      const { actionId, answer } = lateAnswerOf(report);
      hooks.onAnswer?.(report.deviceId, actionId, answer);
    },
    onSlotsChanged: (deviceId, slots, at) => {
      if (exporting()) exporter.keepSlots(deviceId, slots, at);
      hooks.onSlotsChanged?.(deviceId);
    },
    onSlotsSeen: (deviceId, slots, sentAt) => exporting() && exporter.reconcileSlots(deviceId, slots, sentAt),
    onRevokedDevice: (deviceId) => exporter.forgetDevice(deviceId),
    onServing: (serving) => exporting() && exporter.observeServing(serving),
  });
  /**
   * Whether ingested messages go on to the exported series: not on a server deposed as the leader
   * (its exporter is reset, and a write still in flight must not bring series back on a standby).
   */
  const exporting = () => !leaderGate || leading;
  const log = ctx.log.child({ component: 'fleet' });
  // A device's heartbeats and statuses cost at most one store write each per interval; the latest always lands.
  const throttle = new StateThrottle({ inner: ingest, dropped: counters.dropped, accepted: counters.accepted, logger: log, onWriteFailed: (deviceId) => silent.heardNothingUntilNow(deviceId), ...(options.minStateIntervalMs !== undefined ? { minIntervalMs: options.minStateIntervalMs } : {}) });
  // A device's reports are dropped beyond a token bucket (burst 10, then one per 2 s): far above what an agent sends.
  const reportLimit = new ReportRateLimit({ dropped: counters.dropped, logger: log, ...options.reportRateLimit });
  // Answers have a bucket of their own (burst 30, then one per second): a benchmark flood does not hold them back.
  const answerLimit = new ReportRateLimit({ dropped: counters.dropped, logger: log, reason: 'answer-rate-limited', subject: 'answers to assignments and commands', burst: ANSWER_BURST, refillMs: ANSWER_REFILL_MS, ...options.answerRateLimit });
  const receiver = new FleetReceiver({
    broker,
    ingest: throttle,
    logger: log,
    reportLimit,
    answerLimit,
    ...counters,
    // A revoked device's retained status, handed over again (one left from before its revocation
    // was cleared, or its last will published after): cleared, so the next start does not drop it again.
    onUnknownDeviceStatus: (deviceId) => {
      if (!exporting()) return; // a standby (or a deposed leader) does not publish
      clearRetainedStatus(broker, deviceId).catch((error: unknown) => log.warn({ err: errorMessage(error), deviceId }, 'could not clear the retained status of a device that is not enrolled or is revoked'));
    },
    // A report or heartbeat a device published retained (it must not: agents never do) came back
    // at every connection, for good, a revoked device's too: cleared once seen.
    onRetainedDeviceMessage: (topic) => {
      if (!exporting()) return;
      clearRetainedMessage(broker, topic).catch((error: unknown) => log.warn({ err: errorMessage(error), topic }, 'could not clear a retained device message'));
    },
  });
  const brokerUrl = () => ctx.config.mqttPublicUrl ?? ctx.config.mqttUrl ?? `mqtt://${reachableHost(ctx.config.host)}:${port()}`;
  const publisher = new AssignmentPublisher({ fleet, broker, serverUrl: ctx.publicUrl, ...(ctx.publicUrlKnown ? { serverUrlKnown: ctx.publicUrlKnown } : {}), log: ctx.log, signingKey: ctx.signingKey.privateKey, trustedKeys: ctx.trustedKeys });
  // With an external broker the broker side is taken over through the leadership, on SQLite too
  // (its one server always leads): a broker that is down at start is retried in the background.
  const leaderOnly = leadership !== undefined && ctx.config.mqttUrl !== undefined;
  const leaderGate = leaderOnly ? new LeaderOnlyFleetGate(leadership) : undefined; // only the leader connects
  const gate: FleetGate = leaderGate ?? OPEN_FLEET_GATE;
  const devices = new DeviceService({ fleet, broker, signingPublicKey: ctx.signingKey.publicKey, brokerUrl, serverUrl: ctx.publicUrl, log: ctx.log, gate, brokerConnected: () => (leads() ? connected() : null), onRevoked: (id, tokenId) => {
    exporter.forgetDevice(id);
    ctx.tokens.revocations.revoked(tokenId); // its downloads under way stop too
    hooks.onDeviceRevoked?.(id);
  } });
  const holds = new RolloutHolds(ctx.store.engine);
  const statuses = new RegistryModelStatus(ctx.store);
  const assignments = new AssignmentService({
    fleet,
    registry: ctx.registry,
    publisher,
    gate,
    rolloutOf: (deviceIds) => holds.ofDevices(deviceIds),
    statusOf: (model, version) => statuses.versionStatus(model, version),
    turns: ctx.fleetChanges,
    lostFile: (version) => lostModelFile(version, ctx.blobs),
  });
  const retention = reportRetention(fleet.repos, {
    days: ctx.config.reportRetentionDays,
    everyMs: options.reportSweepMs ?? 3_600_000,
    log,
  });
  // A device that died while an external broker was down left no last will: marked offline once silent.
  const silent = new SilentDeviceSweep({
    devices: fleet.repos.devices,
    log,
    listening: () => leads() && connected() && !stopped,
    onMarked: async (deviceId) => {
      counters.markedSilent.inc();
      // While the broker is away a retained publish is only queued, and a reconnect re-sends assignments, not clears.
      if (!connected()) throw new Error('the broker connection is down');
      await clearRetainedStatus(broker, deviceId);
    },
    ...options.silentDevices,
  });
  let reconcile: NodeJS.Timeout | undefined;
  let leading = false;
  /**
   * Whether this server holds the broker side: the leader (with an external broker under a
   * leadership), connected to its broker yet or not; always, otherwise. A leader still connecting
   * (its broker down at start) is no standby: what it says of the devices is the broker's absence.
   */
  const leads = () => !leaderGate || leading;
  let stopped = false;
  /** Ends the wait before a takeover's next broker connection attempt (the server is stopping). */
  let wakeTakeover: (() => void) | undefined;
  /**
   * Forgets the series of exported devices revoked through another server sharing the database
   * (only the one that handled the revocation heard of it), then schedules the next round: one
   * round at a time.
   */
  const reconcileExports = async () => {
    try {
      const gone = await forgetRevokedDevices(exporter, fleet.repos.devices);
      if (gone.length > 0) log.info({ devices: gone.length }, 'removed the series of devices revoked through another server');
    } catch (error) {
      if (!stopped) log.warn({ err: errorMessage(error) }, 'checking the exported devices against the store failed; tried again at the next round');
    }
    if (!stopped) reconcile = setTimeout(reconcileExports, options.exportReconcileMs ?? EXPORT_RECONCILE_MS).unref();
  };
  /** Takes the broker side: devices announce themselves again, the broker starts, assignments are re-sent. */
  const activate = async () => {
    await restoreExports(exporter, fleet.repos);
    // Deposed while reading them back: a standby exports no device series.
    if (!exporting()) exporter.reset();
    await fleet.repos.devices.markAllOffline();
    await startBroker(broker, ctx.config);
    silent.heardNothingUntilNow();
    await publisher.republishRetained();
  };
  const fleetPort = new StoreFleetPort({ fleet, registry: ctx.registry, publisher, outcomes, log: ctx.log, lostFile: (version) => lostModelFile(version, ctx.blobs), ...(options.deliveryTimeoutMs !== undefined ? { deliveryTimeoutMs: options.deliveryTimeoutMs } : {}) });
  const grpc = fleetGrpcServices(ctx, devices, assignments);

  const module: ServerModule = {
    name: 'fleet',
    routes: fleetRoutes(ctx, devices, assignments),
    grpcServices: [grpc.Devices, grpc.Assignments],
    async start() {
      await receiver.start();
      if (!leaderGate) await activate();
      retention.start();
      silent.start();
      reconcile = setTimeout(reconcileExports, options.exportReconcileMs ?? EXPORT_RECONCILE_MS).unref();
      ctx.metrics.storeGauge(PROTOCOL_METRICS.devices, 'Enrolled devices (not revoked)', async () => (await fleet.repos.devices.count()).enrolled);
      ctx.metrics.storeGauge(PROTOCOL_METRICS.devicesOnline, 'Enrolled devices connected now', async () => (await fleet.repos.devices.count()).online);
      ctx.metrics.gauge(PROTOCOL_METRICS.brokerActive, 'Whether this server holds the broker side of the fleet (0: a standby); a leader still connecting to its broker holds it too (fleetprune_fleet_broker_connected says whether it is connected)', () => (leads() ? 1 : 0));
      // The leadership alone does not say the broker is reachable: a leader keeps it while its broker is down.
      ctx.metrics.gauge(PROTOCOL_METRICS.brokerConnected, 'Whether this server\'s connection to the broker is up (the embedded broker: 1; 0 on a standby, which does not connect)', () => (connected() ? 1 : 0));
      ctx.metrics.gauge(
        BROKER_CREDENTIALS_STALE,
        'Whether the broker lags the store\'s device credentials (1: an update failed: Mosquitto\'s password and ACL files could not be rewritten, or a running Mosquitto could not be reloaded, so a revoked device may still connect; the server retries. Files written while no Mosquitto runs are not stale)',
        () => (broker.credentialsProblem() === null ? 0 : 1),
      );
      const mqttPort = port();
      return mqttPort === null ? [] : [{ name: 'mqtt', port: mqttPort, close: () => broker.stop() }];
    },
    stop: async () => {
      stopped = true;
      clearTimeout(reconcile);
      silent.stop();
      await retention.stop();
      await broker.stop();
      await throttle.flush(); // the held heartbeats and statuses, before the store closes
      reportLimit.close(); // logs the reports dropped since each limited device's last line
      answerLimit.close();
    },
  };
  const leadershipHandlers: LeadershipHandlers | undefined = leaderGate
    ? {
        // A leader whose broker is unreachable keeps trying (the rollout controller waits for it):
        // without the broker it could not reach a device anyway.
        elected: async () => {
          leading = true;
          throttle.resume();
          for (let attempt = 1; ; attempt++) {
            try {
              await activate();
              break;
            } catch (error) {
              if (!leading || stopped) throw new Error('deposed or stopping before the broker connection was made', { cause: error });
              // A broker refusing FLEETPRUNE_MQTT_PASSWORD is a misconfiguration that waiting does not
              // heal: the takeover fails (on SQLite, the start, on one line; on PostgreSQL the lead
              // goes back for another server or a later poll). With --mosquitto-dir the server writes
              // that password itself and Mosquitto may not have reloaded it yet: retried.
              if ((error as Error).cause instanceof BrokerRefusedConnection && !ctx.config.mosquittoDir) throw error;
              const waitMs = Math.min(10_000, 500 * 2 ** attempt);
              logTakeoverFailure(log, error, attempt, waitMs);
              await new Promise<void>((resolve) => {
                wakeTakeover = resolve;
                setTimeout(resolve, waitMs).unref();
              });
              wakeTakeover = undefined;
              if (!leading || stopped) throw new Error('deposed or stopping before the broker connection was made', { cause: error });
            }
          }
          if (!leading || stopped) {
            await broker.stop();
            throw new Error('deposed or stopping while connecting to the broker');
          }
          leaderGate.active = true;
          log.info({ broker: ctx.config.mqttUrl }, 'connected to the external broker as the leader');
        },
        stopping: () => {
          stopped = true;
          wakeTakeover?.();
        },
        deposed: () => {
          leading = false;
          wakeTakeover?.();
          leaderGate.active = false;
          throttle.discard();
          exporter.reset();
          broker.stop().catch((error: unknown) => log.error({ err: error }, 'disconnecting from the broker failed'));
        },
      }
    : undefined;
  return { module, devices, assignments, fleetPort, reportHistory: new StoreReportHistory(fleet), withdrawals: exporter, brokerConnected: connected, ...(leadershipHandlers ? { leadershipHandlers } : {}) };
}

/**
 * One line per failed attempt to take the broker side, worded after what failed: no Mosquitto
 * running yet (the first install starts the server first; warn, since that is expected until
 * Mosquitto starts), Mosquitto's files not written or not reloaded (the server does not connect
 * before they are: it may have written its own password), or the connection itself.
 */
function logTakeoverFailure(log: ServerContext['log'], error: unknown, attempt: number, waitMs: number): void {
  const retry = `retrying in ${waitMs / 1000} s`;
  if (error instanceof MosquittoNotRunning) {
    log.warn({ attempt }, `${error.message}; the leader connects once Mosquitto runs, ${retry}`);
  } else if (error instanceof MosquittoAuthFilesError) {
    log.error({ err: error.message, attempt }, `the leader does not connect to the external broker before Mosquitto's password and ACL files are updated; ${retry}`);
  } else {
    log.error({ err: errorMessage(error), attempt }, `the leader cannot connect to the external broker; ${retry}`);
  }
}

/** How often a server checks that the devices it exports series for are still live (ms). */
export const EXPORT_RECONCILE_MS = 10_000;

/** A broker that cannot start is a configuration problem: one line naming the flag. */
async function startBroker(broker: Broker, config: ServerConfig): Promise<void> {
  try {
    await broker.start();
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw config.mqttUrl
      ? new UserError(`--mqtt-url: ${errorMessage(error)}`, { cause: error })
      : new UserError(`--mqtt-port: cannot listen on ${config.host}:${config.mqttPort} (${errorMessage(error)})`, { cause: error });
  }
}
