import { userText } from './bidi.ts';
import { ago, esc, table, utc } from './html.ts';

/** A device as GET /api/devices shows it (fields the dashboard uses). */
export interface DeviceRow {
  id: string;
  labels: Record<string, string>;
  online: boolean;
  lastSeen?: string | null;
  revokedAt?: string | null;
  active?: { model: string; version: string } | null;
  candidate?: { model: string; version: string } | null;
}

/** One page of GET /api/devices: its devices, and fleet-wide counts (live devices, and how many are online). */
export interface DevicePage {
  devices: DeviceRow[];
  next: string | null;
  counts?: { enrolled: number; online: number; revoked?: number };
  /** false while the server's broker connection is down: the online states are as they were then. */
  brokerConnected?: boolean | null;
}

export function devicesFrom(json: unknown): DevicePage {
  if (Array.isArray(json)) return { devices: json as DeviceRow[], next: null };
  const page = (json ?? {}) as Partial<DevicePage>;
  const broker = (json as { broker?: { connected?: boolean | null } } | null)?.broker;
  return { devices: page.devices ?? [], next: page.next ?? null, ...(page.counts ? { counts: page.counts } : {}), ...(broker ? { brokerConnected: broker.connected ?? null } : {}) };
}

const slot = (s: DeviceRow['active']) => (s ? `${userText(s.model)}@${userText(s.version)}` : '<span class="muted">—</span>');

/**
 * `index`: how many pages of `pageSize` come before this one (the view pages by id with the API's
 * `after` cursor: Next and First buttons, data-page).
 */
export function renderFleet(page: DevicePage, index = 0, pageSize = page.devices.length): string {
  const { devices } = page;
  const online = page.counts?.online ?? devices.filter((d) => d.online).length;
  const total = page.counts?.enrolled ?? devices.length;
  const rows = devices.map(
    (d) => `<tr data-device="${esc(d.id)}">
      <td class="device-id">${userText(d.id)}</td>
      <td class="labels">${Object.entries(d.labels ?? {}).map(([k, v]) => `<span class="badge">${userText(k)}=${userText(v)}</span>`).join(' ')}</td>
      <td>${d.revokedAt ? '<span class="badge">revoked</span>' : `<span class="badge ${d.online ? 'online' : 'offline'}">${d.online ? 'online' : 'offline'}</span>`} <span class="muted" title="${esc(d.lastSeen ? `last seen ${utc(d.lastSeen)}` : 'never seen')}">${esc(ago(d.lastSeen))}</span></td>
      <td class="active-version model-version">${slot(d.active)}</td>
      <td class="candidate-version model-version">${slot(d.candidate)}</td>
    </tr>`,
  );
  const first = index * pageSize + 1;
  const paged = page.next !== null || index > 0;
  // The list holds revoked devices too (marked so), which the enrolled count leaves out: the range counts rows of the whole list.
  const revoked = page.counts?.revoked ?? 0;
  const listed = revoked > 0 ? ` of ${total + revoked} by id, ${revoked} of them revoked` : ' by id';
  const shown = paged && devices.length > 0 ? ` (devices ${first}–${first + devices.length - 1}${listed})` : revoked > 0 ? ` (${revoked} revoked ${revoked === 1 ? 'device' : 'devices'} listed too)` : '';
  const pager = paged
    ? `<div class="pager">
        <button type="button" data-page="first" title="The first page of devices, by id" ${index > 0 ? '' : 'disabled'}>‹ First</button>
        <button type="button" data-page="previous" title="The page before this one" ${index > 0 ? '' : 'disabled'}>‹ Previous</button>
        <button type="button" data-page="next" title="The next ${pageSize} devices, by id" ${page.next !== null ? '' : 'disabled'}>Next ›</button>
      </div>`
    : '';
  // A hung broker leaves every device online as it was: said above the list, not shown as live.
  const stale = page.brokerConnected === false ? '<p class="broker-down">The server is not connected to the broker now: each device\'s status is as it was when the connection went.</p>' : '';
  return `${stale}<p class="muted">${online} of ${total} enrolled devices online${shown}</p>${pager}${table(['device', 'labels', 'status', 'active', 'candidate'], rows, 'No devices enrolled yet.')}`;
}
