/** The charset parameter of a Content-Type header, lowercased and unquoted; null when none (or an empty one) is given. */
export function contentCharset(contentType: string | undefined): string | null {
  const match = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType ?? '');
  const charset = match ? (match[1] ?? match[2] ?? '').trim().toLowerCase() : '';
  return charset === '' ? null : charset;
}
