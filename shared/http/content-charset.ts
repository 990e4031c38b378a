/** The charset parameter of a Content-Type header, lowercased and unquoted; null when none (or an empty one) is given. */
export function contentCharset(contentType: string | undefined): string | null {
  const match = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType ?? '');
  const charset = match ? (match[1] ?? match[2] ?? '').trim().toLowerCase() : '';
  return charset === '' ? null : charset;
}

/** Charsets whose text is UTF-8 as sent: `utf-8`, its common spelling `utf8`, and its subset US-ASCII. */
const UTF8_CHARSETS: ReadonlySet<string> = new Set(['utf-8', 'utf8', 'us-ascii']);

/** Whether a body in `charset` (from contentCharset; null: none given) can be read as UTF-8. */
export function readsAsUtf8(charset: string | null): boolean {
  return charset === null || UTF8_CHARSETS.has(charset);
}
