import { z } from 'zod';

/**
 * The server's URL as devices get it (agent configs, --public-url): an http(s) base that paths are
 * appended to (`${url}/api/blobs/…`). A query, a fragment or user:password@ in it made every
 * download URL a device built wrong (`http://host/?a=b/api/…`), found only once the device failed
 * to fetch; they are refused where the URL is given.
 */
export const ServerUrlSchema = z
  .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
  .refine((url) => {
    // zod runs this even when the URL check above failed, which already said so.
    if (!URL.canParse(url)) return true;
    const parsed = new URL(url);
    return !url.includes('?') && !url.includes('#') && parsed.username === '' && parsed.password === '';
  }, 'must be a base URL without a query (?…), a fragment (#…) or user:password@ (paths are appended to it)')
  // Nothing listens on port 0: a device given it could download nothing, found only at its first assignment.
  .refine((url) => !URL.canParse(url) || new URL(url).port !== '0', "port 0 is no server's port (http(s)://HOST:PORT, 1-65535; leave it out for 80 or 443)");
