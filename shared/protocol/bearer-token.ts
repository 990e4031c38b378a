/**
 * A token travels as "Authorization: Bearer <token>" (HTTP) or as gRPC metadata: visible ASCII
 * (! to ~), no space (the server reads the header up to the first one). fetch() and grpc-js throw
 * on anything else, and fetch's error quotes the whole header value, token included.
 */
const NOT_VISIBLE_ASCII = /[^!-~]/u;

const CHARACTER_NAMES: Record<string, string> = { '\r': 'a carriage return', '\n': 'a line feed', '\t': 'a tab', ' ': 'a space' };

/**
 * What keeps `token` out of a header, or null when nothing does: the first bad character, by
 * name and code point, and its position. It never quotes the token.
 */
export function bearerTokenProblem(token: string): string | null {
  const bad = NOT_VISIBLE_ASCII.exec(token);
  if (!bad) return null;
  const code = `U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  const name = CHARACTER_NAMES[bad[0]] ?? 'a character';
  // A carriage return is typically left by `FLEETPRUNE_TOKEN=$(cat file)` on a file with CRLF line endings.
  const hint = bad[0] === '\r' ? ' (copied from a file with CRLF line endings?)' : '';
  return `holds ${name} (${code}) at position ${bad.index + 1}; tokens are visible ASCII (! to ~)${hint}`;
}
