import type { TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import type { ServingDelta } from '../../server/metricproviders/report-history.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { openStore, type StoreLocation } from '../../server/store/open-store.ts';
import type { Store } from '../../server/store/store.ts';
import type { ModelRef } from '../../shared/protocol/payloads.ts';
import { registerVersions } from '../helpers/registered-versions.ts';

export interface StoreFleetServer {
  store: Store;
  fleet: FleetStore;
  registry: Registry;
  exporter: ReportMetricsExporter;
  ingest: StoreFleetIngest;
  /** Every ServingDelta the ingest handed the exporter, in order. */
  served: ServingDelta[];
}

/**
 * One server's view of the store: its own connection, exporter and ingest, wired as createFleet
 * wires them (server/fleet/fleet-module.ts). Its store closes after the test, or before when the
 * test closes it (a restart): closing twice is harmless. `clock`: the ingest's (arrival times);
 * `registered`: model versions registered first, unless they are (the ingest takes benchmarks of registered versions only).
 */
export async function storeFleetServer(t: TestContext, location: StoreLocation, options: { clock?: () => Date; registered?: readonly ModelRef[] } = {}): Promise<StoreFleetServer> {
  const store = await openStore(location);
  await registerVersions(store, options.registered ?? []);
  let closed = false;
  const close = store.close.bind(store);
  store.close = async () => {
    if (!closed) await close();
    closed = true;
  };
  t.after(() => store.close());
  const fleet = new FleetStore(store);
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  const served: ServingDelta[] = [];
  const ingest = new StoreFleetIngest({
    fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), ...(options.clock ? { clock: options.clock } : {}),
    onBenchmark: (reports) => reports.forEach((report) => exporter.observe(report)),
    onSlotsChanged: (deviceId, slots, at) => exporter.keepSlots(deviceId, slots, at),
    onSlotsSeen: (deviceId, slots, sentAt) => exporter.reconcileSlots(deviceId, slots, sentAt),
    onRevokedDevice: (deviceId) => exporter.forgetDevice(deviceId),
    onServing: (serving) => {
      served.push(serving);
      exporter.observeServing(serving);
    },
  });
  return { store, fleet, registry, exporter, ingest, served };
}
