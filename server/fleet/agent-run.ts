import type { Telemetry } from '../../shared/protocol/payloads.ts';

/** What the server keeps of a device's previous heartbeat that matters here. */
export interface PreviousHeartbeat {
  uptimeSeconds: number;
  runId?: string;
}

/**
 * Whether a heartbeat comes from the same agent run as the device's previous one, so that its
 * cumulative serving counters (which count from zero in each run) are compared with the
 * previous ones; otherwise they count whole.
 *
 * - Both carry a `runId`: the same run exactly when they are equal. An agent that restarted is
 *   recognised even when its first heartbeat already counts more than the last one stored (it
 *   served a while before the server heard from it).
 * - Otherwise (an agent that predates `runId`, or the first heartbeat after an agent or server
 *   upgrade): a restart only when the uptime went down, as before. A lower counter still means a
 *   restart (servingDelta). Telling an upgrade apart from a restart is not possible here, so it is
 *   not guessed: counting a run's served rows twice would be worse than missing a few.
 */
export function sameAgentRun(previous: PreviousHeartbeat | null, current: Pick<Telemetry, 'uptimeSeconds' | 'runId'>): boolean {
  if (!previous) return false;
  if (previous.runId !== undefined && current.runId !== undefined) return previous.runId === current.runId;
  return previous.uptimeSeconds <= current.uptimeSeconds;
}

/**
 * Whether a heartbeat was sent before the device's stored one in the same agent run (equal run
 * ids, a lower uptime): delivered out of order, it is older news than what is stored. Without run
 * ids a lower uptime means a restart, as before.
 */
export function olderInSameRun(previous: PreviousHeartbeat | null, current: Pick<Telemetry, 'uptimeSeconds' | 'runId'>): boolean {
  return previous?.runId !== undefined && previous.runId === current.runId && current.uptimeSeconds < previous.uptimeSeconds;
}
