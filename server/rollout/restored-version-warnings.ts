import type { RolloutState } from './rollout-state.ts';
import type { VersionStatus } from './fleet-port.ts';

/** How a start's warning about a version its rollback would restore ends (a rollback's own say `this rollback restores it`, and the dashboard's confirmation shows a rollback's as they would be now: the rollout's rollbackWarnings). */
export const WOULD_RESTORE = 'a rollback of this rollout would restore it';

/** A version's newest status, as the registry records it (null: none yet). */
export type VersionStatusOf = (version: string) => Promise<{ status: VersionStatus; reason: string; at: string } | null>;

/** Whether the registry has the version retired (false: not retired, or not there). */
export type VersionRetiredOf = (version: string) => Promise<boolean>;

/**
 * At most this many distinct versions are looked up: a fleet runs a handful, and a start or a
 * rollback must not become one query per device.
 */
const MAX_VERSIONS_CHECKED = 100;

/**
 * The versions a rollback of the rollout sends back, most devices first: each device's baseline
 * (devices that left the fleet get nothing), and the previous production it restores.
 */
export function restoredVersions(state: RolloutState): { version: string; devices: number; previousProduction: boolean }[] {
  const devices = new Map<string, number>();
  for (const device of state.devices) {
    if (device.baseline === null || device.left) continue;
    devices.set(device.baseline, (devices.get(device.baseline) ?? 0) + 1);
  }
  const versions = new Set([...devices.keys(), ...(state.previousProduction === null ? [] : [state.previousProduction])]);
  return [...versions]
    .map((version) => ({ version, devices: devices.get(version) ?? 0, previousProduction: version === state.previousProduction }))
    .sort((a, b) => b.devices - a.devices || Number(b.previousProduction) - Number(a.previousProduction) || a.version.localeCompare(b.version));
}

/**
 * Warnings about versions a rollback of the rollout would restore (at its start) or restores (at
 * the rollback) although a rollout failed them or rolled them back, or the registry has them
 * retired (since the start, typically: a baseline retired once its successor was promoted). They
 * never block anything: a rollback must always be possible, and an operator may have put that
 * version back on purpose; but restoring a version marked bad or retired without a word hides it
 * from the one who clicks. A retired previous production is un-retired by the rollback, which
 * makes it production again (registry-model-status.ts); a retired baseline stays retired.
 */
export async function restoredVersionWarnings(state: RolloutState, statusOf: VersionStatusOf, retiredOf: VersionRetiredOf, moment: 'start' | 'rollback'): Promise<string[]> {
  const { model } = state.spec;
  const warnings: string[] = [];
  for (const restored of restoredVersions(state).slice(0, MAX_VERSIONS_CHECKED)) {
    const [status, retired] = await Promise.all([statusOf(restored.version), retiredOf(restored.version)]);
    const bad = status?.status === 'failed' || status?.status === 'rolled-back';
    if (!bad && !retired) continue;
    const where = [
      ...(restored.previousProduction ? ['the previous production'] : []),
      ...(restored.devices > 0 ? [`the baseline of ${restored.devices} device${restored.devices === 1 ? '' : 's'}`] : []),
    ].join(' and ');
    const effect = moment === 'start' ? WOULD_RESTORE : 'this rollback restores it';
    if (bad) warnings.push(`${model}@${restored.version} (${where}) is ${status.status} since ${status.at} (${status.reason}); ${effect}`);
    if (retired) {
      const unretires = moment === 'rollback' && restored.previousProduction ? ' and un-retires it: it is production again' : '';
      warnings.push(`${model}@${restored.version} (${where}) is retired in the registry; ${effect}${unretires}`);
    }
  }
  return warnings;
}
