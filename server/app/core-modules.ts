import { SERVER_METRICS } from '../../shared/metrics/names.ts';
import { grpcServices } from '../grpc/grpc-services.ts';
import { adminRoutes } from '../http/routes/admin-routes.ts';
import { artifactsRoutes } from '../http/routes/artifacts-routes.ts';
import { jobsRoutes } from '../http/routes/jobs-routes.ts';
import { modelsRoutes } from '../http/routes/models-routes.ts';
import { dashboardModule } from '../dashboard/dashboard-module.ts';
import type { Fleet } from '../fleet/fleet-module.ts';
import type { ServerContext } from './server-context.ts';
import type { ServerModule } from './server-module.ts';

/** The control-plane modules of issue #3; later subsystems (MQTT, rollouts, dashboard) append theirs. */
export function coreModules(ctx: ServerContext, fleet: Fleet): ServerModule[] {
  const grpc = grpcServices(ctx);
  return [
    {
      name: 'registry',
      routes: modelsRoutes(ctx),
      grpcServices: [grpc.ModelRegistry],
      async start() {
        ctx.metrics.storeGauge(SERVER_METRICS.registryModels, 'Registered models', () => ctx.store.models.countModels());
        ctx.metrics.storeGauge(SERVER_METRICS.registryVersions, 'Registered model versions', () => ctx.store.models.countVersions());
      },
    },
    { name: 'artifacts', routes: artifactsRoutes(ctx), grpcServices: [grpc.Blobs] },
    { name: 'access', routes: adminRoutes(ctx), grpcServices: [grpc.Tokens, grpc.Audit] },
    {
      name: 'jobs',
      routes: jobsRoutes(ctx),
      grpcServices: [grpc.Jobs],
      async start() {
        await ctx.jobs.recoverInterrupted();
        ctx.jobs.startLeases();
        ctx.metrics.gauge(SERVER_METRICS.jobsRunning, 'Pruning jobs running now', () => ctx.jobs.running);
      },
      stop: () => ctx.jobs.stop(),
    },
    fleet.module,
    dashboardModule(),
  ];
}
