import { errorMessage } from '../../shared/util/errors.ts';
import type { ServerContext } from '../app/server-context.ts';
import type { ServerModule } from '../app/server-module.ts';
import { SystemScheduler } from '../analysis/scheduler.ts';
import { rolloutsGrpc } from '../grpc/rollouts-grpc.ts';
import { rolloutsRoutes } from '../http/routes/rollouts-routes.ts';
import { BuiltinProvider } from '../metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../metricproviders/builtin/registry-series-recorder.ts';
import { PrometheusProvider } from '../metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../metricproviders/provider-resolver.ts';
import type { ReportHistory } from '../metricproviders/report-history.ts';
import { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';
import { evidenceRetention } from './evidence-retention.ts';
import type { FleetPort, LateDeviceAnswer } from './fleet-port.ts';
import { chainLeadershipHandlers, type Leadership, type LeadershipHandlers } from './leader-election.ts';
import { MissedDeviceEvents } from './missed-device-events.ts';
import { RegistryModelStatus } from './registry-model-status.ts';
import { RolloutController } from './rollout-controller.ts';
import { NotifyingRolloutRepository, RolloutFeed } from './rollout-feed.ts';
import { RolloutMetrics } from './rollout-metrics.ts';
import { RolloutService } from './rollout-service.ts';

export interface RolloutModuleDeps {
  /** The device fleet rollouts assign to and revert. */
  readonly fleet: FleetPort;
  /** Per-device benchmark reports for the builtin provider (absent: it sees the server's own series only). */
  readonly reports?: ReportHistory;
  /** Which server drives rollouts (see leadershipFor). */
  readonly leadership: Leadership;
  /** Run before this module's own handlers on election, after them on deposition (the fleet's broker connection). */
  readonly beforeRollouts?: LeadershipHandlers;
  /** How often old per-device evidence is trimmed (--report-retention-days; default hourly; tests shorten it). */
  readonly retentionSweepMs?: number;
}

export interface RolloutModule extends ServerModule {
  readonly service: RolloutService;
  readonly leadership: Leadership;
  /** For the fleet: a device came back online (a no-op on followers; the leader re-sends what it wants). */
  deviceOnline(deviceId: string): Promise<void>;
  /** For the fleet: a device could not benchmark a candidate it was assigned (the leader fails that rollout). */
  benchmarkFailed(deviceId: string, assignmentId: string, reason: string): Promise<void>;
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
  const providers = new MetricProviderResolver({
    builtin: new BuiltinProvider({
      recorder: new RegistrySeriesRecorder(ctx.metrics.registry, {
        onLimit: (max) => log.warn({ maxSeries: max }, 'the builtin metric provider tracks no more server series: new ones come from the report history only, within each query window (use --prometheus-url for a fleet this size)'),
      }),
      ...(deps.reports ? { history: deps.reports } : {}),
    }),
    ...(ctx.config.prometheusUrl ? { prometheus: new PrometheusProvider({ url: ctx.config.prometheusUrl }) } : {}),
  });
  const { leadership } = deps;
  let controller: RolloutController | undefined;
  /** Device events that came while no controller ran (starting, standby): replayed once one has recovered. */
  const missed = new MissedDeviceEvents();
  const service = new RolloutService({ store: ctx.store, repository, feed, leadership, controller: () => controller, fleetChanges: ctx.fleetChanges });
  const retention = evidenceRetention(new StoreRolloutRepository(ctx.store.engine), {
    days: ctx.config.reportRetentionDays,
    everyMs: deps.retentionSweepMs ?? 3_600_000,
    log,
  });

  return {
    name: 'rollouts',
    service,
    leadership,
    routes: rolloutsRoutes(service, leadership, ctx.config.maxBodyBytes, ctx.stalledStreams),
    grpcServices: [rolloutsGrpc(service, leadership, { tokens: ctx.tokens, metrics: ctx.metrics, log }, ctx.config.maxBodyBytes, ctx.stalledStreams)],
    async start() {
      retention.start();
      await leadership.start(chainLeadershipHandlers(deps.beforeRollouts, {
        elected: async () => {
          controller?.stop();
          controller = new RolloutController({ repository, fleet: deps.fleet, models, providers, scheduler: new SystemScheduler(), metrics, logger: log, startupGraceMs: ctx.config.analysisStartupGraceSeconds * 1000 });
          const resumed = await controller.recover();
          log.info({ resumed }, `driving rollouts; resumed ${resumed.length} unfinished`);
          // In the background: a fleet reconnecting at start must not hold the takeover up.
          void missed.replay(controller, (error, deviceId) => log.warn({ err: errorMessage(error), deviceId }, 'a device event that came before the rollouts were driven could not be handled'));
        },
        deposed: () => {
          controller?.stop();
          controller = undefined;
          metrics.reset();
        },
      }));
    },
    async stop() {
      await retention.stop();
      feed.close();
      const stopping = controller;
      controller = undefined;
      stopping?.stop();
      // Let actions in flight record their results (bounded: a hung fleet call must not block shutdown).
      if (stopping) await Promise.race([stopping.idle(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      await leadership.stop();
    },
    async deviceOnline(deviceId) {
      if (controller) await controller.deviceOnline(deviceId);
      else missed.online(deviceId);
    },
    async benchmarkFailed(deviceId, assignmentId, reason) {
      if (controller) await controller.benchmarkFailed(deviceId, assignmentId, reason);
      else missed.benchmarkFailed({ deviceId, assignmentId, reason });
    },
    async deviceAnswered(deviceId, actionId, result) {
      if (controller) await controller.deviceAnswered(deviceId, actionId, result);
      else missed.answered({ deviceId, actionId, result });
    },
  };
}
