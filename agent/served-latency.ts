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

  /**
   * Keeps the series of these versions (the slots' models; null: an empty slot), made at zero for
   * one that has none yet, and removes every other version's. Made before the first request (at
   * start, at a slot change), a version's series is scraped as long as the unlabelled histogram,
   * which exists from the start: the recording rule reads the labelled one only where it covers
   * the rate window as the unlabelled one does (deploy/prometheus/rules).
   */
  keepOnly(kept: ReadonlyArray<Served | null | undefined>): void {
    const wanted = new Map(kept.filter((ref): ref is Served => Boolean(ref)).map((ref) => [key(ref), { model: ref.model, version: ref.version }]));
    for (const [labelKey, labels] of this.#labelSets) {
      if (wanted.has(labelKey)) continue;
      this.#histogram.remove(labels);
      this.#labelSets.delete(labelKey);
    }
    for (const [labelKey, labels] of wanted) {
      if (this.#labelSets.has(labelKey)) continue;
      this.#histogram.zero(labels);
      this.#labelSets.set(labelKey, labels);
    }
  }
}

function key(served: Served): string {
  return JSON.stringify([served.model, served.version]);
}
