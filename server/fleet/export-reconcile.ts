import type { ReportMetricsExporter } from '../metricproviders/report-metrics-exporter.ts';
import type { DevicesRepository } from '../store/repositories/devices-repository.ts';

/**
 * Removes the series of exported devices the store no longer has live: revoked through another
 * server on the same database (two servers with embedded brokers both ingest; only the one that
 * handled the revocation heard of it), or gone. Returns the devices forgotten.
 */
export async function forgetRevokedDevices(exporter: Pick<ReportMetricsExporter, 'deviceIds' | 'forgetDevice'>, devices: Pick<DevicesRepository, 'liveAmong'>): Promise<string[]> {
  const exported = exporter.deviceIds();
  if (exported.length === 0) return [];
  const live = await devices.liveAmong(exported);
  // A device exported after the query read the store is live: it is checked at the next round.
  const gone = exported.filter((id) => !live.has(id));
  for (const id of gone) exporter.forgetDevice(id);
  return gone;
}
