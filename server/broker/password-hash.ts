import { pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/**
 * Password hashes in Mosquitto 2's `$7$` format: PBKDF2-HMAC-SHA512,
 * `$7$<iterations>$<base64 salt>$<base64 64-byte hash>`. The embedded broker verifies them and
 * the generated Mosquitto password file carries them unchanged, so one hash serves both brokers.
 */
const PREFIX = '$7$';
const SALT_BYTES = 12;
const HASH_BYTES = 64;
/** Device secrets are 256 random bits, so iterations add little; Mosquitto's own default is 101. */
export const DEFAULT_ITERATIONS = 1000;

export async function hashPassword(password: string, iterations = DEFAULT_ITERATIONS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await pbkdf2Async(password, salt, iterations, HASH_BYTES, 'sha512');
  return `${PREFIX}${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Whether `password` matches an encoded `$7$` hash; false (never a throw) for a malformed hash. */
export async function verifyPassword(password: string | Buffer, encoded: string): Promise<boolean> {
  const match = /^\$7\$(\d{1,7})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(encoded);
  if (!match) return false;
  const iterations = Number(match[1]);
  const salt = Buffer.from(match[2]!, 'base64');
  const expected = Buffer.from(match[3]!, 'base64');
  if (iterations < 1 || expected.length !== HASH_BYTES) return false;
  const actual = await pbkdf2Async(password, salt, iterations, HASH_BYTES, 'sha512');
  return timingSafeEqual(actual, expected);
}
