/**
 * Sets `key` in `map` as its newest entry, then drops the oldest entries beyond `max`: a cache
 * that keeps what was used last and cannot grow without bound.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  // Only when over: starting an iteration walks past the deleted entries at the front of the
  // map's table, which a map refreshed on every use has many of.
  if (map.size <= max) return;
  for (const oldest of map.keys()) {
    if (map.size <= max) break;
    map.delete(oldest);
  }
}
