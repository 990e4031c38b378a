import { datasetOfRows, type Dataset } from '../../shared/data/dataset.ts';
import { createRng, shuffled } from '../../shared/util/rng.ts';

export type Perturbation = 'none' | 'sensor-noise' | 'drift';

/** One simulated field device: its identity, labels and local labelled holdout. */
export interface SimulatedDevice {
  id: string;
  labels: Record<string, string>;
  perturbation: Perturbation;
  holdout: Dataset;
}

const SITES = [
  { site: 'osaka', perturbation: 'sensor-noise' as const },
  { site: 'lyon', perturbation: 'drift' as const },
  { site: 'austin', perturbation: 'none' as const },
  { site: 'nairobi', perturbation: 'none' as const },
];
const HARDWARE = ['pi4', 'jetson-nano', 'x86-nuc'];
/**
 * Pilot size: the relative checks compare per-device values with a Mann-Whitney U test, which
 * needs at least four devices before anything can be significant, and small holdouts make
 * per-device accuracy coarse, so the demo pilots on half its fleet.
 */
export function pilotSize(count: number): number {
  return Math.max(4, Math.round(count / 2));
}

/**
 * Plans `count` devices over four sites and three kinds of hardware. Each gets a shard of the
 * held-out rows; devices at osaka add sensor noise (Gaussian, 10% of each feature's spread) and
 * devices at lyon see drift (every feature 8% higher), so sites disagree as real ones do. The
 * first half of the devices (at least four) carry `pilot=true`.
 */
export function planFleet(count: number, holdout: Dataset, seed: number): SimulatedDevice[] {
  const rng = createRng(seed);
  const order = shuffled(
    holdout.x.map((_, i) => i),
    rng,
  );
  const spread = featureSpread(holdout.x);
  return Array.from({ length: count }, (_, d) => {
    const { site, perturbation } = SITES[d % SITES.length]!;
    const rows = order.filter((_, i) => i % count === d);
    const x = rows.map((i) => perturb(holdout.x[i]!, perturbation, spread, rng));
    const labels: Record<string, string> = { site, hw: HARDWARE[d % HARDWARE.length]!, cohort: site };
    if (d < pilotSize(count)) labels.pilot = 'true';
    return {
      id: `${site}-${String(d + 1).padStart(2, '0')}`,
      labels,
      perturbation,
      holdout: datasetOfRows(holdout, x, rows.map((i) => holdout.y[i]!)),
    };
  });
}

function perturb(row: readonly number[], kind: Perturbation, spread: readonly number[], rng: () => number): number[] {
  if (kind === 'drift') return row.map((value) => value * 1.08);
  if (kind === 'sensor-noise') return row.map((value, i) => value + gaussian(rng) * 0.1 * spread[i]!);
  return row.slice();
}

function featureSpread(x: readonly (readonly number[])[]): number[] {
  const width = x[0]?.length ?? 0;
  return Array.from({ length: width }, (_, i) => {
    const column = x.map((row) => row[i]!);
    const mean = column.reduce((a, b) => a + b, 0) / column.length;
    return Math.sqrt(column.reduce((a, b) => a + (b - mean) ** 2, 0) / column.length);
  });
}

/** Box-Muller. */
function gaussian(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

/** Splits off the rows the devices hold (stratified by class), leaving the rest for training. */
export function holdOutRows(dataset: Dataset, fraction: number, seed: number): { train: Dataset; holdout: Dataset } {
  const rng = createRng(seed);
  const byClass = new Map<number, number[]>();
  dataset.y.forEach((label, i) => {
    const key = dataset.task === 'classification' ? label : 0;
    byClass.set(key, [...(byClass.get(key) ?? []), i]);
  });
  const held = new Set<number>();
  for (const rows of byClass.values()) shuffled(rows, rng).slice(0, Math.round(rows.length * fraction)).forEach((i) => held.add(i));
  const pick = (keep: (i: number) => boolean): Dataset => {
    const rows = dataset.x.map((_, i) => i).filter(keep);
    return datasetOfRows(
      dataset,
      rows.map((i) => dataset.x[i]!),
      rows.map((i) => dataset.y[i]!),
    );
  };
  return { train: pick((i) => !held.has(i)), holdout: pick((i) => held.has(i)) };
}
