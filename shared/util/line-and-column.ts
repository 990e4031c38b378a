/** Where `offset` falls in `text`, as `line L, column C` (both from 1), for a message naming a place in a file or body. */
export function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  return `line ${before.split('\n').length}, column ${offset - before.lastIndexOf('\n')}`;
}
