/**
 * What is wrong with the outline of a text that should hold one PEM key, in words (null when it
 * holds one whole block). OpenSSL reads the first block of a text and ignores the rest, so a file
 * of two keys (an operator's try at trusting both the old and the new key) would silently mean
 * only the first; and its own words for an empty or cut-short key are a decoder's error code.
 * `oneKey` says, for several blocks, what to do instead.
 */
export function pemShapeProblem(text: string, oneKey = 'give each key its own file'): string | null {
  if (text.trim() === '') return 'is empty';
  const begins = text.match(/-----BEGIN [^-\r\n]*-----/g) ?? [];
  if (begins.length === 0) return 'holds no PEM block (a -----BEGIN …----- line)';
  if (begins.length > 1) return `holds ${begins.length} PEM blocks, where one key belongs (${oneKey})`;
  if (!/-----END [^-\r\n]*-----/.test(text)) return 'is cut short: its PEM block has no -----END …----- line';
  return null;
}
