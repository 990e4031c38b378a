import type { Measurement } from './measurement.ts';

/** Queries longer than this (a relative check names every device) keep their start only. */
export const TRIMMED_QUERY_CHARS = 300;

/**
 * A measurement without its per-device evidence, for rollouts finished longer ago than the
 * retention window: a value vector becomes its mean (what the dashboard charts), per-device
 * lists are emptied and long queries cut. The verdict and what decided it are kept.
 */
export function trimMeasurementEvidence(measurement: Measurement, at: Date): Measurement {
  if (measurement.trimmed) return measurement;
  const devices = Math.max(measurement.value?.length ?? 0, measurement.baseline?.length ?? 0, measurement.relative?.candidate.length ?? 0);
  const queries = Object.fromEntries(
    Object.entries(measurement.queries).map(([name, query]) => [name, query.length > TRIMMED_QUERY_CHARS ? `${query.slice(0, TRIMMED_QUERY_CHARS)}… (${query.length} characters, trimmed)` : query]),
  );
  return {
    ...measurement,
    queries,
    value: measurement.value === null ? null : meanOf(measurement.value),
    ...(measurement.baseline ? { baseline: meanOf(measurement.baseline) } : {}),
    ...(measurement.relative ? { relative: { ...measurement.relative, candidate: [], baseline: [] } } : {}),
    trimmed: { at: at.toISOString(), devices },
  };
}

function meanOf(values: readonly number[]): number[] {
  return values.length === 0 ? [] : [values.reduce((sum, value) => sum + value, 0) / values.length];
}
