import type { Role } from '../../shared/protocol/payloads.ts';
import type { DeviceReturn } from './rollout-state.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import { parsePrometheusUrl } from '../metricproviders/prometheus-url.ts';
import type { ServerContext } from '../app/server-context.ts';
import type { ServerModule } from '../app/server-module.ts';
import { SystemScheduler } from '../analysis/scheduler.ts';
import { rolloutsGrpc } from '../grpc/rollouts-grpc.ts';
import { rolloutsRoutes } from '../http/routes/rollouts-routes.ts';
import { BuiltinProvider } from '../metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../metricproviders/builtin/registry-series-recorder.ts';
import { PrometheusProvider } from '../metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../metricproviders/provider-resolver.ts';
import { preflightQueries } from '../analysis/query-preflight.ts';
import type { ReportHistory } from '../metricproviders/report-history.ts';
import type { ExportedSeriesWithdrawals } from '../metricproviders/report-metrics-exporter.ts';
import { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';
import { evidenceRetention } from './evidence-retention.ts';
import type { FleetPort, LateDeviceAnswer } from './fleet-port.ts';
import type { Leadership, LeadershipHandlers } from './leader-election.ts';
import { FleetReadiness } from './fleet-readiness.ts';
import { MissedDeviceEvents } from './missed-device-events.ts';
import { RegistryModelStatus } from './registry-model-status.ts';
import { RolloutController } from './rollout-controller.ts';
import { NotifyingRolloutRepository, RolloutFeed } from './rollout-feed.ts';
import { LeaderMetrics } from './leader-metrics.ts';
import { RolloutMetrics } from './rollout-metrics.ts';
import { RolloutService } from './rollout-service.ts';

export interface RolloutModuleDeps {
  /** The device fleet rollouts assign to and revert. */
  readonly fleet: FleetPort;
  /** Per-device benchmark reports for the builtin provider (absent: it sees the server's own series only). */
  readonly reports?: ReportHistory;
  /** The server's device series exporter: what history shows of a label set it stopped exporting is stale from then (absent: never). */
  readonly withdrawals?: ExportedSeriesWithdrawals;
  /** Which server drives rollouts (see leadershipFor). */
  readonly leadership: Leadership;
  /**
   * The fleet's broker connection (an external broker): on election this module's controller takes
   * the rollouts over first (commands are accepted at once), then these handlers connect, and only
   * then do the rollouts' device commands go out (FleetReadiness); on deposition they run after the
   * controller stopped.
   */
  readonly beforeRollouts?: LeadershipHandlers;
  /** With beforeRollouts: whether the broker connection is up now (a dropped one holds the device commands again). */
  readonly brokerConnected?: () => boolean;
  /** How often old per-device evidence is trimmed (--report-retention-days; default hourly; tests shorten it). */
  readonly retentionSweepMs?: number;
}

export interface RolloutModule extends ServerModule {
  readonly service: RolloutService;
  readonly leadership: Leadership;
  /**
   * Whether this server takes rollout commands now, as RolloutService does: it leads and has its
   * controller (from the moment it starts picking the unfinished rollouts up; not after a takeover
   * that failed). With an external broker that is down, it does all the same (device commands wait).
   */
  drivingRollouts(): boolean;
  /**
   * For the fleet: a device came back online, or answered something (`answered`: it may have taken
   * what a rollout's candidate waited behind). A no-op on followers; the leader re-sends what it wants.
   */
  deviceOnline(deviceId: string, cause?: DeviceReturn): Promise<void>;
  /** For the fleet: a device could not benchmark a candidate it was assigned (the leader fails that rollout, unless the device's own model failed). */
  benchmarkFailed(deviceId: string, assignmentId: string, reason: string, failedRole?: Role): Promise<void>;
  /** For the fleet: a device answered an assignment or command (the leader records late answers). */
  deviceAnswered(deviceId: string, actionId: string, result: LateDeviceAnswer): Promise<void>;
}

/**
 * Staged rollouts in the server: the store-backed repository, the registry's version status,
 * metric providers (prometheus with --prometheus-url, else builtin over the server's metrics and
 * the report history), leader election, and the REST and gRPC APIs. The leader runs a
 * RolloutController (recovering unfinished rollouts when elected, stopping when deposed).
 */
export function rolloutModule(ctx: ServerContext, deps: RolloutModuleDeps): RolloutModule {
  const { log } = ctx;
  const feed = new RolloutFeed(new StoreRolloutRepository(ctx.store.engine));
  const repository = new NotifyingRolloutRepository(new StoreRolloutRepository(ctx.store.engine), feed);
  const models = new RegistryModelStatus(ctx.store);
  const metrics = new RolloutMetrics(ctx.metrics.registry);
  const leaderMetrics = new LeaderMetrics(ctx.metrics.registry);
  const fleet = ctx.signingKey.keyId;
  const providers = new MetricProviderResolver({
    builtin: new BuiltinProvider({
      fleet,
      recorder: new RegistrySeriesRecorder(ctx.metrics.registry, {
        onLimit: (max) => log.warn({ maxSeries: max }, 'the builtin metric provider tracks no more server series: new ones come from the report history only, within each query window (use --prometheus-url for a fleet this size)'),
      }),
      ...(deps.reports ? { history: deps.reports } : {}),
      ...(deps.withdrawals ? { withdrawals: deps.withdrawals } : {}),
    }),
    ...(ctx.config.prometheusUrl ? { prometheus: new PrometheusProvider({ url: ctx.config.prometheusUrl }) } : {}),
  });
  announceMetricProvider(ctx.config.prometheusUrl, providers, log);
  const { leadership } = deps;
  let controller: RolloutController | undefined;
  /** With an external broker: whether the leader's broker connection is made (device commands wait for it). */
  let readiness: FleetReadiness | undefined;
  /** Device events that came while no controller ran (starting, standby): replayed once one has recovered. */
  const missed = new MissedDeviceEvents();
  const service = new RolloutService({ store: ctx.store, repository, feed, leadership, controller: () => controller, fleetChanges: ctx.fleetChanges, fleetWaiting: () => readiness !== undefined && !readiness.reachable,
    ...(deps.fleet.unsendable ? { unsendable: (model: string, version: string) => deps.fleet.unsendable!(model, version) } : {}),
    preflight: (spec) => preflightQueries(spec, providers, { prometheusConfigured: ctx.config.prometheusUrl !== undefined, fleet }),
  });
  const retention = evidenceRetention(new StoreRolloutRepository(ctx.store.engine), {
    days: ctx.config.reportRetentionDays,
    everyMs: deps.retentionSweepMs ?? 3_600_000,
    log,
  });

  return {
    name: 'rollouts',
    service,
    leadership,
    drivingRollouts: () => controller !== undefined,
    routes: rolloutsRoutes(service, leadership, ctx.config.maxBodyBytes, ctx.stalledStreams),
    grpcServices: [rolloutsGrpc(service, leadership, { tokens: ctx.tokens, metrics: ctx.metrics, log }, ctx.config.maxBodyBytes, ctx.stalledStreams)],
    async start() {
      retention.start();
      const fleetHandlers = deps.beforeRollouts;
      await leadership.start({
        elected: async () => {
          controller?.stop();
          leaderMetrics.stoppedDriving();
          readiness?.close(new Error('re-elected: a new controller drives the rollouts'));
          // With an external broker the store is enough to decide: the controller takes the rollouts
          // over (and operator commands, a rollback above all) before the broker connection, which
          // can take long (a broker outage: the fleet retries it); what needs the broker waits for it.
          const waiting = fleetHandlers
            ? new FleetReadiness(deps.brokerConnected, () => log.warn('the broker connection is down: the rollouts\' device commands wait for it (nothing is sent, and no delivery attempt counts, until it is back)'))
            : undefined;
          readiness = waiting;
          const driving = new RolloutController({ repository, fleet: waiting ? waiting.wrap(deps.fleet) : deps.fleet, models, providers, scheduler: new SystemScheduler(), metrics, logger: log, startupGraceMs: ctx.config.analysisStartupGraceSeconds * 1000, fleetLabel: fleet, nodeId: ctx.config.nodeId });
          controller = driving;
          let resumed: readonly string[];
          try {
            resumed = await driving.recover();
            // Deposed while recovering (the leadership's check lost the lock): taking the broker side
            // now would make a server that no longer leads connect as the leader.
            if (controller !== driving) throw new Error('deposed while recovering the rollouts');
            // Driving from here on: rollout commands are taken (what needs the broker waits for it).
            leaderMetrics.driving();
            log.info({ resumed }, `driving rollouts; resumed ${resumed.length} unfinished${waiting ? ' (their device commands wait for the broker connection)' : ''}`);
            if (fleetHandlers && waiting) {
              await fleetHandlers.elected();
              waiting.open();
            }
            // Counted once done: a takeover failing again and again (a broker refusing the server's
            // password) is not a failover every poll.
            if (controller === driving) leaderMetrics.tookOver();
          } catch (error) {
            // The takeover failed (the broker refuses the server's password, or deposed meanwhile):
            // this server does not drive rollouts it cannot deliver.
            waiting?.close(error instanceof Error ? error : new Error(String(error)));
            if (controller === driving) {
              driving.stop();
              controller = undefined;
              leaderMetrics.stoppedDriving();
            }
            throw error;
          }
          // Taken over: each resumed rollout's log says which server drives it from now on.
          await driving.noteTakeover(resumed, ctx.config.nodeId);
          // In the background: a fleet reconnecting at start must not hold the takeover up.
          void missed.replay(driving, (error, deviceId) => log.warn({ err: errorMessage(error), deviceId }, 'a device event that came before the rollouts were driven could not be handled'));
        },
        deposed: () => {
          controller?.stop();
          controller = undefined;
          leaderMetrics.stoppedDriving();
          readiness?.close(new Error('deposed before the broker connection was made: the device commands were not sent'));
          readiness = undefined;
          metrics.reset();
          fleetHandlers?.deposed();
        },
      });
    },
    async stop() {
      await retention.stop();
      feed.close();
      const stopping = controller;
      controller = undefined;
      leaderMetrics.stoppedDriving();
      stopping?.stop();
      // Device commands still waiting for the broker connection send nothing now.
      readiness?.close(new Error('the server is stopping before the broker connection was made: the device commands were not sent'));
      // Let actions in flight record their results (bounded: a hung fleet call must not block shutdown).
      if (stopping) await Promise.race([stopping.idle(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      // A takeover still waiting for the external broker gives up, rather than hold the stop below up.
      deps.beforeRollouts?.stopping?.();
      await leadership.stop();
    },
    async deviceOnline(deviceId, cause = 'online') {
      if (controller) await controller.deviceOnline(deviceId, cause);
      // Replayed once a controller runs: a device back online (a revocation heard by a standby is
      // not: the leader's own retries, or a resume, find the device gone).
      else if (cause === 'online') missed.online(deviceId);
    },
    async benchmarkFailed(deviceId, assignmentId, reason, failedRole = 'candidate') {
      if (controller) await controller.benchmarkFailed(deviceId, assignmentId, reason, failedRole);
      else missed.benchmarkFailed({ deviceId, assignmentId, reason, failedRole });
    },
    async deviceAnswered(deviceId, actionId, result) {
      if (controller) await controller.deviceAnswered(deviceId, actionId, result);
      else missed.answered({ deviceId, actionId, result });
    },
  };
}

/**
 * Says at the start which provider rollout analyses measure on, and, for Prometheus, asks it once
 * (in the background): one that does not answer is a warning now, not only a rollout failed later.
 */
function announceMetricProvider(prometheusUrl: string | undefined, providers: MetricProviderResolver, log: Logger): void {
  if (prometheusUrl === undefined) {
    log.info("rollout analyses measure on the builtin metric provider (this server's own series; --prometheus-url for Prometheus)");
    return;
  }
  const base = parsePrometheusUrl(prometheusUrl).base.href;
  log.info({ prometheus: base }, `rollout analyses measure on Prometheus at ${base}`);
  providers
    .resolve('prometheus')
    .query('vector(1)', { now: new Date(), timeoutMs: 5_000 })
    .catch((error: unknown) => log.warn({ prometheus: base, err: errorMessage(error) }, `Prometheus at ${base} does not answer (${errorMessage(error)}): rollout analyses that measure on it fail until it does`));
}
