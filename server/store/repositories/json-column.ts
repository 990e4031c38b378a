/**
 * JSON values are stored as TEXT on both engines. JSON has no NaN or ±Infinity, and
 * JSON.stringify writes them as null: a measurement of 0/0 (a fleet without traffic) came back
 * from the store as null, which no code reading a number expects (prom-client's Gauge.set threw,
 * and the server could not start). They are stored as `{"$number": "NaN"}` (or "Infinity",
 * "-Infinity") and read back as the numbers they were.
 */
export function toJsonColumn(value: unknown): string {
  return JSON.stringify(value, keepNonFinite);
}

export function fromJsonColumn<T>(text: unknown): T {
  const json = String(text);
  // The reviver costs a call per value: only texts that hold a stored non-finite number need it.
  return (json.includes(NON_FINITE_KEY) ? JSON.parse(json, readNonFinite) : JSON.parse(json)) as T;
}

export function fromNullableJsonColumn<T>(text: unknown): T | null {
  return text === null || text === undefined ? null : fromJsonColumn<T>(text);
}

const NON_FINITE_KEY = '"$number"';
const NON_FINITE = new Set(['NaN', 'Infinity', '-Infinity']);

function keepNonFinite(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? { $number: String(value) } : value;
}

function readNonFinite(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  const stored = (value as { $number?: unknown }).$number;
  return keys.length === 1 && typeof stored === 'string' && NON_FINITE.has(stored) ? Number(stored) : value;
}
