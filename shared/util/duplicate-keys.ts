import { createScanner } from 'jsonc-parser';

// jsonc-parser's SyntaxKind is a const enum, which esbuild cannot inline from a declaration file.
const OPEN_BRACE = 1;
const CLOSE_BRACE = 2;
const OPEN_BRACKET = 3;
const CLOSE_BRACKET = 4;
const COMMA = 5;
const STRING = 10;
const EOF = 17;

interface Frame {
  /** Keys seen so far; null for an array. */
  keys: Set<string> | null;
  /** The key whose value is being read. */
  key: string | null;
  /** An array's: the index of the element being read. */
  index: number;
  /** The next string is a key (after `{` or `,` in an object). */
  expectKey: boolean;
}

/** A path longer than this many steps is shown by its first and last few (a text may nest 100,000 levels). */
const MAX_PATH_STEPS = 12;

/**
 * The first key that appears twice in one object of a JSON text, with its path (`files.model.onnx`,
 * `rows[3].alcohol`), or null. JSON.parse keeps the last duplicate and other parsers the first, so a signed document
 * with duplicates could read differently to a verifier than to whoever checked it.
 *
 * It reads tokens in one loop, with its own stack, so a text nested 100,000 levels deep is read
 * like any other (jsonc-parser's `visit` recurses per level and overflows the call stack there).
 * Malformed JSON is not judged here: JSON.parse refuses it after.
 */
export function duplicateJsonKey(text: string): string | null {
  const scanner = createScanner(text, true);
  const stack: Frame[] = [];
  for (let token = scanner.scan(); token !== EOF; token = scanner.scan()) {
    const top = stack.at(-1);
    if (token === OPEN_BRACE || token === OPEN_BRACKET) {
      if (top) top.expectKey = false;
      stack.push({ keys: token === OPEN_BRACE ? new Set() : null, key: null, index: 0, expectKey: token === OPEN_BRACE });
    } else if (token === CLOSE_BRACE || token === CLOSE_BRACKET) {
      stack.pop();
    } else if (token === COMMA) {
      if (top?.keys) top.expectKey = true;
      else if (top) top.index++;
    } else if (token === STRING && top?.keys && top.expectKey) {
      const key = scanner.getTokenValue();
      if (top.keys.has(key)) return pathOf(stack.slice(0, -1), key);
      top.keys.add(key);
      top.key = key;
      top.expectKey = false;
    } else if (top) {
      top.expectKey = false;
    }
  }
  return null;
}

/** `a.b[2].key`: each enclosing object's key and array's index, then the key given twice. */
function pathOf(enclosing: readonly Frame[], key: string): string {
  const steps = enclosing.map((frame, i) => (frame.keys ? `${i === 0 ? '' : '.'}${frame.key}` : `[${frame.index}]`));
  steps.push(`${steps.length === 0 ? '' : '.'}${key}`);
  if (steps.length > MAX_PATH_STEPS) steps.splice(MAX_PATH_STEPS / 2, steps.length - MAX_PATH_STEPS, '…');
  return steps.join('').replace(/^\./, '');
}
