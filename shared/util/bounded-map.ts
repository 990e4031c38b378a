/**
 * Sets `key` in `map` as its newest entry, then drops the oldest entries beyond `max`: a cache
 * that keeps what was used last and cannot grow without bound.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= max) break;
    map.delete(oldest);
  }
}
