/**
 * A request body body-parser could not inflate (Content-Encoding gzip, deflate or br that does not
 * decode), as `not valid gzip data (zlib's message)`; null for any other error. zlib's error codes
 * start with Z_, brotli's with ERR__ERROR_ (ERR__ERROR_FORMAT_PADDING_1). Shared by the server's
 * REST API and the agent's /v1/predict, so both name a corrupt body alike.
 */
export function undecodableBody(error: { code?: unknown; message?: string }, contentEncoding: string | string[] | undefined): string | null {
  const { code } = error;
  if (typeof code !== 'string' || !(code.startsWith('Z_') || code.startsWith('ERR__ERROR_'))) return null;
  const encoding = String(contentEncoding ?? 'compressed').replace(/[^\x20-\x7e]/g, '?').slice(0, 40);
  const line = (error.message ?? '').split('\n')[0]!;
  return `not valid ${encoding} data (${line.length > 200 ? `${line.slice(0, 200)}…` : line})`;
}
