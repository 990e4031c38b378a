import { visit } from 'jsonc-parser';

/**
 * The first key that appears twice in one object of a JSON text, with its path (`files.model.onnx`),
 * or null. JSON.parse keeps the last duplicate and other parsers the first, so a signed document
 * with duplicates could read differently to a verifier than to whoever checked it.
 */
export function duplicateJsonKey(text: string): string | null {
  const open: Set<string>[] = [];
  const path: string[] = [];
  let found: string | null = null;
  visit(text, {
    onObjectBegin: () => {
      open.push(new Set());
    },
    onObjectProperty: (key) => {
      const keys = open.at(-1)!;
      if (keys.has(key) && found === null) found = [...path.slice(0, open.length - 1), key].join('.');
      keys.add(key);
      path[open.length - 1] = key;
    },
    onObjectEnd: () => {
      open.pop();
      path.length = open.length;
    },
  });
  return found;
}
