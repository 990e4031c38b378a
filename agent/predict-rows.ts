import type { Manifest } from '../shared/artifact/manifest.ts';
import { columnKey } from '../shared/util/canonical-text.ts';
import { isFloat32 } from '../shared/util/numbers.ts';

export const MAX_ROWS_PER_REQUEST = 1024;

/**
 * Turns a /v1/predict body `{ "rows": [...] }` into row-major float32 features in the model's
 * order. A row is an array of numbers in the manifest's feature order, or an object naming every
 * feature. Returns a one-line reason for a 400 instead of throwing.
 */
export function parsePredictRows(body: unknown, manifest: Manifest): { features: Float32Array; rows: number } | { error: string } {
  const features = manifest.features;
  if (body === null || typeof body !== 'object' || Array.isArray(body) || !('rows' in body)) {
    return { error: 'the body must be a JSON object {"rows": [...]}' };
  }
  const rows = (body as { rows: unknown }).rows;
  if (!Array.isArray(rows) || rows.length === 0) return { error: 'rows: must be a non-empty array' };
  if (rows.length > MAX_ROWS_PER_REQUEST) return { error: `rows: at most ${MAX_ROWS_PER_REQUEST} rows per request (got ${rows.length})` };
  const known = new Set(features);
  const byText = new Map(features.map((name) => [columnKey(name), name]));
  const packed = new Float32Array(rows.length * features.length);
  for (let r = 0; r < rows.length; r++) {
    const row: unknown = rows[r];
    if (Array.isArray(row)) {
      if (row.length !== features.length) return { error: `rows[${r}]: expected ${features.length} values (${listed(features)}), got ${row.length}` };
      for (let c = 0; c < row.length; c++) {
        const value: unknown = row[c];
        if (!isFloat32(value)) return { error: `rows[${r}][${c}] (${features[c]}): ${FINITE_FLOAT32}` };
        packed[r * features.length + c] = value;
      }
    } else if (row !== null && typeof row === 'object') {
      let record = row as Record<string, unknown>;
      // Names compared as text: a key spelled decomposed ("e" + U+0301) names the feature "é".
      if (Object.keys(record).some((key) => !known.has(key))) {
        const named = new Map<string, unknown>();
        for (const [key, value] of Object.entries(record)) {
          const name = byText.get(columnKey(key)) ?? key;
          if (!known.has(name)) return { error: `rows[${r}]: unknown feature ${JSON.stringify(key.slice(0, 100))} (the model takes ${listed(features)})` };
          // "é" composed and decomposed in one row: one feature given twice, not the last one read.
          if (named.has(name)) return { error: `rows[${r}]: feature ${JSON.stringify(name)} is given twice (spelled two ways)` };
          named.set(name, value);
        }
        record = Object.fromEntries(named);
      }
      for (let c = 0; c < features.length; c++) {
        const value = Object.hasOwn(record, features[c]!) ? record[features[c]!] : undefined;
        if (value === undefined) return { error: `rows[${r}]: missing feature ${JSON.stringify(features[c])}` };
        if (!isFloat32(value)) return { error: `rows[${r}].${features[c]}: ${FINITE_FLOAT32}` };
        packed[r * features.length + c] = value;
      }
    } else {
      return { error: `rows[${r}]: must be an array of numbers or an object of named features` };
    }
  }
  return { features: packed, rows: rows.length };
}

const FINITE_FLOAT32 = 'must be a finite number within the float32 range (±3.4e38)';

/** The model's feature names for an error message: the first 20 (a model of 784 pixels would make a line of 8 KB). */
function listed(features: readonly string[]): string {
  return features.length > 20 ? `${features.slice(0, 20).join(', ')}, … ${features.length - 20} more` : features.join(', ');
}

/** The first row whose model output holds NaN or ±Infinity (inputs far outside what it was trained on), or -1. */
export function firstNonFiniteRow(outputs: readonly (readonly number[])[]): number {
  return outputs.findIndex((row) => row.some((value) => !Number.isFinite(value)));
}

export type Prediction = { label: string; index: number; probabilities: number[] } | { value: number };

/**
 * The answers of model outputs of the manifest's width (runModel checks it when given the width);
 * throws on a row of any other width rather than answer with a class, or a value, the row does not hold.
 */
export function toPredictions(manifest: Manifest, outputs: number[][]): Prediction[] {
  const width = manifest.task === 'classification' ? manifest.labels.length : 1;
  const wrong = outputs.findIndex((row) => row.length !== width);
  if (wrong >= 0) throw new Error(`output row ${wrong} holds ${outputs[wrong]!.length} values, but the manifest's ${manifest.task} task needs ${width}`);
  if (manifest.task === 'regression') return outputs.map((row) => ({ value: row[0]! }));
  return outputs.map((row) => {
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
    return { label: manifest.labels[best]!, index: best, probabilities: row };
  });
}

/** Whether the candidate agrees with the active model on a row: same class, or values within 1 % (regression). */
export function predictionsAgree(active: Prediction, candidate: Prediction): boolean {
  if ('index' in active && 'index' in candidate) return active.index === candidate.index;
  if ('value' in active && 'value' in candidate) return Math.abs(active.value - candidate.value) <= 0.01 * Math.max(Math.abs(active.value), 1e-9);
  return false;
}
