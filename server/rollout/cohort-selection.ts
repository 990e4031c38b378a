import { createHash } from 'node:crypto';

/**
 * Deterministic, stable cohorts for percentage steps. Devices are ordered by
 * sha256(rolloutId + "\n" + deviceId): the order is the same on every server and after every
 * restart, differs between rollouts (so the same devices are not always the guinea pigs), and
 * a device's place does not change when other devices join or leave. A percentage step takes a
 * prefix of that order (after the devices already in the cohort), so 5% ⊂ 25% ⊂ 50% ⊂ 100%.
 */
export function cohortOrder(rolloutId: string, deviceIds: readonly string[]): string[] {
  const keyed = deviceIds.map((id) => ({ id, key: createHash('sha256').update(`${rolloutId}\n${id}`).digest('hex') }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1));
  return keyed.map((entry) => entry.id);
}

/** Devices a percentage of `total` means: ceil, and at least one for any positive percentage. */
export function cohortSize(percent: number, total: number): number {
  if (total === 0 || percent <= 0) return 0;
  return Math.min(total, Math.max(1, Math.ceil((total * percent) / 100 - 1e-9)));
}

/**
 * The cohort after a percentage step: the current cohort plus devices in hash order until it
 * holds cohortSize(percent) devices (never fewer than before).
 */
export function growCohort(order: readonly string[], current: readonly string[], percent: number): string[] {
  const target = cohortSize(percent, order.length);
  const cohort = [...current];
  const inCohort = new Set(current);
  for (const id of order) {
    if (cohort.length >= target) break;
    if (!inCohort.has(id)) {
      cohort.push(id);
      inCohort.add(id);
    }
  }
  return cohort;
}
