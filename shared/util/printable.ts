/**
 * User text on one line that cannot rearrange what surrounds it, for places that show plain text
 * (a terminal, a confirm() dialog): every control character (C0 with tab, DEL, C1), line and
 * paragraph separators and bidirectional controls (embeddings, overrides, isolates, and the
 * LRM, RLM and ALM marks) escaped as \n, \r, \t or \xHH / \uHHHH; backslash is left as it is.
 * A newline in a label cannot add a line of its own, nor an override reverse the text after it.
 *
 * Free of dependencies: the dashboard's bundle imports it.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, (char) => {
    if (char === '\n') return '\\n';
    if (char === '\r') return '\\r';
    if (char === '\t') return '\\t';
    const code = char.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
