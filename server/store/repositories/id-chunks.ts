/** Ids per `IN (...)` query: well under SQLite's and PostgreSQL's bound-parameter limits. */
export const ID_CHUNK = 500;

/** `items` in consecutive groups of at most `size`. */
export function chunksOf<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}
