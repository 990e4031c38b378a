/**
 * The Prometheus address as configured (--prometheus-url), split into the base URL requests go
 * to and the credentials it may carry (`https://user:password@prometheus.example/`). fetch
 * refuses a URL with credentials, and its error quotes the whole URL, password included, into
 * every measurement's message; so the credentials become a basic Authorization header and the
 * base URL, which messages name, never holds them.
 */
export interface PrometheusAddress {
  /** http(s), no credentials, path ending in `/` (a path prefix such as /prometheus is kept). */
  readonly base: URL;
  /** `Basic …` when the URL carried credentials. */
  readonly authorization?: string;
}

export function parsePrometheusUrl(text: string): PrometheusAddress {
  let base: URL;
  try {
    base = new URL(text);
  } catch {
    throw new TypeError(`--prometheus-url: "${redactCredentials(text).slice(0, 200)}" is not a URL`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`--prometheus-url: must be http(s), not ${base.protocol}`);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const hasCredentials = base.username !== '' || base.password !== '';
  const user = decodeComponent(base.username);
  const password = decodeComponent(base.password);
  base.username = '';
  base.password = '';
  return hasCredentials ? { base, authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } : { base };
}

/** URL-encoded user or password as typed; a stray `%` (not an escape) stays itself. */
function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** `scheme://user:password@host…` → `scheme://***@host…` anywhere in `text` (a message quoting a URL). */
export function redactCredentials(text: string): string {
  return text.replace(/(\/\/)[^/@\s?#]*@/g, '$1***@');
}
