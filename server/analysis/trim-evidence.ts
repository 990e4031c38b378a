import type { Measurement } from './measurement.ts';

/** Queries longer than this (a relative check names every device) keep their start only. */
export const TRIMMED_QUERY_CHARS = 300;

/**
 * A measurement without its per-device evidence, for rollouts finished longer ago than the
 * retention window: a value (and baseline) vector becomes its median, what the dashboard charts
 * and fleetprune_analysis_value exports (medianOf of one value is itself; its mean would put a
 * failed candidate above its bound on the chart), per-device lists are emptied and long queries
 * cut. The verdict and what decided it are kept. Measurements trimmed by earlier servers hold means.
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
    value: measurement.value === null ? null : medianOf(measurement.value),
    ...(measurement.baseline ? { baseline: medianOf(measurement.baseline) } : {}),
    ...(measurement.relative ? { relative: { ...measurement.relative, candidate: [], baseline: [] } } : {}),
    trimmed: { at: at.toISOString(), devices },
  };
}

/** The median as a one-value vector (as the dashboard's medianOf computes it); [] for []. */
function medianOf(values: readonly number[]): number[] {
  if (values.length === 0) return [];
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return [sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2];
}
