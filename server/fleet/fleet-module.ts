import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { reachableHost } from '../app/listeners.ts';
import type { Broker } from '../broker/broker.ts';
import type { ServerConfig } from '../config/server-config.ts';
import type { ServerContext } from '../app/server-context.ts';
import type { ServerModule } from '../app/server-module.ts';
import { ReportMetricsExporter } from '../metricproviders/report-metrics-exporter.ts';
import type { ReportHistory } from '../metricproviders/report-history.ts';
import type { FleetPort } from '../rollout/fleet-port.ts';
import { fleetGrpcServices } from '../grpc/fleet-grpc.ts';
import { fleetRoutes } from '../http/routes/fleet-routes.ts';
import { AssignmentOutcomes } from './assignment-outcomes.ts';
import { AssignmentPublisher } from './assignment-publisher.ts';
import { AssignmentService } from './assignment-service.ts';
import { DeviceService } from './device-service.ts';
import { createFleetBroker } from './fleet-broker.ts';
import { fleetCounters } from './fleet-metrics.ts';
import { FleetReceiver } from './fleet-receiver.ts';
import { FleetStore } from './fleet-store.ts';
import { StoreCredentialStore } from './store-credential-store.ts';
import { StoreFleetIngest } from './store-fleet-ingest.ts';
import { StoreFleetPort } from './store-fleet-port.ts';
import { StoreReportHistory } from './store-report-history.ts';

/** The fleet subsystem: its server module, and the ports other subsystems (rollouts, analysis) use. */
export interface Fleet {
  module: ServerModule;
  devices: DeviceService;
  assignments: AssignmentService;
  fleetPort: FleetPort;
  reportHistory: ReportHistory;
}

export interface FleetHooks {
  /** A device announced itself online. */
  onDeviceOnline?: (deviceId: string) => void;
}

/**
 * Devices, enrollment, assignments and the MQTT side of the server: the broker (embedded on
 * --mqtt-port, or external at --mqtt-url), the receiver that stores what devices send, and the
 * publisher. Starts before the HTTP listener: devices are marked offline (they announce
 * themselves again), the receiver subscribes, the broker starts, and every device's current
 * assignment is republished (an embedded broker loses retained messages on restart).
 */
export function createFleet(ctx: ServerContext, hooks: FleetHooks = {}): Fleet {
  const fleet = new FleetStore(ctx.store);
  const counters = fleetCounters(ctx.metrics.registry);
  const { broker, port } = createFleetBroker(ctx.config, new StoreCredentialStore(fleet), ctx.log.child({ component: 'broker' }), counters.denied);
  const exporter = new ReportMetricsExporter(ctx.metrics.registry);
  const outcomes = new AssignmentOutcomes();
  const ingest = new StoreFleetIngest({
    fleet,
    cohortLabel: ctx.config.cohortLabel,
    outcomes,
    onBenchmark: (reports) => reports.forEach((report) => exporter.observe(report)),
    onDeviceOnline: hooks.onDeviceOnline,
  });
  const receiver = new FleetReceiver({ broker, ingest, logger: ctx.log.child({ component: 'fleet' }), ...counters });
  const brokerUrl = () => ctx.config.mqttPublicUrl ?? ctx.config.mqttUrl ?? `mqtt://${reachableHost(ctx.config.host)}:${port()}`;
  const publisher = new AssignmentPublisher({ fleet, broker, serverUrl: ctx.publicUrl, log: ctx.log });
  const devices = new DeviceService({ fleet, broker, signingPublicKey: ctx.signingKey.publicKey, brokerUrl, serverUrl: ctx.publicUrl, log: ctx.log });
  const assignments = new AssignmentService({ fleet, registry: ctx.registry, publisher });
  const fleetPort = new StoreFleetPort({ fleet, registry: ctx.registry, broker, publisher, outcomes, log: ctx.log });
  const grpc = fleetGrpcServices(ctx, devices, assignments);

  const module: ServerModule = {
    name: 'fleet',
    routes: fleetRoutes(ctx, devices, assignments),
    grpcServices: [grpc.Devices, grpc.Assignments],
    async start() {
      await fleet.repos.devices.markAllOffline();
      await receiver.start();
      await startBroker(broker, ctx.config);
      await publisher.republishRetained();
      ctx.metrics.gauge(PROTOCOL_METRICS.devices, 'Enrolled devices (not revoked)', async () => (await fleet.repos.devices.count()).enrolled);
      ctx.metrics.gauge(PROTOCOL_METRICS.devicesOnline, 'Enrolled devices connected now', async () => (await fleet.repos.devices.count()).online);
      const mqttPort = port();
      return mqttPort === null ? [] : [{ name: 'mqtt', port: mqttPort, close: () => broker.stop() }];
    },
    stop: () => broker.stop(),
  };
  return { module, devices, assignments, fleetPort, reportHistory: new StoreReportHistory(fleet) };
}

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
