/** JSON values are stored as TEXT on both engines. */
export function toJsonColumn(value: unknown): string {
  return JSON.stringify(value);
}

export function fromJsonColumn<T>(text: unknown): T {
  return JSON.parse(String(text)) as T;
}

export function fromNullableJsonColumn<T>(text: unknown): T | null {
  return text === null || text === undefined ? null : fromJsonColumn<T>(text);
}
