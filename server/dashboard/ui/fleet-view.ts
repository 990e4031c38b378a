import { ago, esc, table } from './html.ts';

/** A device as GET /api/devices shows it (fields the dashboard uses). */
export interface DeviceRow {
  id: string;
  labels: Record<string, string>;
  online: boolean;
  lastSeen?: string | null;
  active?: { model: string; version: string } | null;
  candidate?: { model: string; version: string } | null;
}

export function devicesFrom(json: unknown): DeviceRow[] {
  const list = Array.isArray(json) ? json : ((json as { devices?: unknown[] })?.devices ?? []);
  return list as DeviceRow[];
}

const slot = (s: DeviceRow['active']) => (s ? `${esc(s.model)}@${esc(s.version)}` : '<span class="muted">—</span>');

export function renderFleet(devices: readonly DeviceRow[]): string {
  const online = devices.filter((d) => d.online).length;
  const rows = devices.map(
    (d) => `<tr data-device="${esc(d.id)}">
      <td>${esc(d.id)}</td>
      <td>${Object.entries(d.labels ?? {}).map(([k, v]) => `<span class="badge">${esc(k)}=${esc(v)}</span>`).join(' ')}</td>
      <td><span class="badge ${d.online ? 'online' : 'offline'}">${d.online ? 'online' : 'offline'}</span> <span class="muted">${esc(ago(d.lastSeen))}</span></td>
      <td class="active-version">${slot(d.active)}</td>
      <td class="candidate-version">${slot(d.candidate)}</td>
    </tr>`,
  );
  return `<p class="muted">${online} of ${devices.length} devices online</p>${table(['device', 'labels', 'status', 'active', 'candidate'], rows, 'No devices enrolled yet.')}`;
}
