import type { Histogram } from 'prom-client';
import type { ModelRef } from '../shared/protocol/payloads.ts';

type Served = Pick<ModelRef, 'model' | 'version'>;

/**
 * The active model's inference time per /v1/predict request, by the model and version that
 * answered it. The labels come with the observation, so after a switch (a promotion, a rollback)
 * Prometheus' rate window credits each request to the version that served it: read through the
 * active slot's info series instead, the last minutes of the old version were the new one's.
 * Series are kept for the versions in the active and previous slots (the two a rollback moves
 * between); those of a version that left both are removed, so an agent's life of versions
 * does not pile up label sets.
 */
export class ServedLatency {
  readonly #histogram: Histogram<'model' | 'version'>;
  readonly #labelSets = new Map<string, Served>();

  constructor(histogram: Histogram<'model' | 'version'>) {
    this.#histogram = histogram;
  }

  observe(served: Served, seconds: number): void {
    const labels = { model: served.model, version: served.version };
    this.#labelSets.set(key(labels), labels);
    this.#histogram.observe(labels, seconds);
  }

  /** Removes the series of every version but these (the slots' models; null: an empty slot). */
  keepOnly(kept: ReadonlyArray<Served | null | undefined>): void {
    const keep = new Set(kept.filter((ref): ref is Served => Boolean(ref)).map(key));
    for (const [labelKey, labels] of this.#labelSets) {
      if (keep.has(labelKey)) continue;
      this.#histogram.remove(labels);
      this.#labelSets.delete(labelKey);
    }
  }
}

function key(served: Served): string {
  return JSON.stringify([served.model, served.version]);
}
