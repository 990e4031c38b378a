import { createPublicKey, type KeyObject } from 'node:crypto';
import { createScanner, parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { duplicateJsonKey } from '../util/duplicate-keys.ts';
import { UserError, describeZodError, errorMessage } from '../util/errors.ts';
import { describeFsError } from '../util/fs-checks.ts';
import { lineAndColumn } from '../util/line-and-column.ts';
import { NotARegularFileError, readRegularFile } from '../util/read-regular-file.ts';
import { MAX_NESTING_DEPTH, describeDataProblem, untrustedDataProblem } from '../util/untrusted-data.ts';
import { pemShapeProblem } from '../artifact/pem-shape.ts';
import { bearerTokenProblem } from './bearer-token.ts';
import { DeviceIdSchema } from './payloads.ts';
import { ServerUrlSchema } from './server-url.ts';

/**
 * The agent's config file, written at enrollment (`fleetprune devices enroll`): the device's
 * identity and credentials, where the broker and the server are, and the server's public
 * signing key, pinned so that the agent only installs models the server signed.
 */
/** Names that would read or replace an object's prototype instead of naming a label. */
export const RESERVED_LABEL_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** A device label key: 1-64 characters of A-Z a-z 0-9 . _ -, and not one of the reserved object keys. */
export const LabelKeySchema = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'label keys are 1-64 characters of A-Z a-z 0-9 . _ -')
  .refine((key) => !RESERVED_LABEL_KEYS.has(key), { error: (issue) => `label key "${String(issue.input)}" is reserved` });

export const MAX_LABEL_VALUE_CHARS = 256;

/**
 * A broker URL: mqtt:// or mqtts:// with a host. mqtt.js reads one without a host (`mqtt://`,
 * `mqtt:x`) as localhost:1883, so a device given one would talk to itself.
 */
export const BrokerUrlSchema = z
  .url({ protocol: /^mqtts?$/, error: 'must be an mqtt:// or mqtts:// URL' })
  // Run after a failed url check too (zod refines every issue): text that is no URL is left to it.
  .refine((url) => !URL.canParse(url) || new URL(url).hostname !== '', 'must name the broker\'s host (mqtt://HOST:PORT)')
  // mqtt.js reads port 0 as "no port" and connects to 1883 (8883 for mqtts): another broker than the one named.
  .refine((url) => !URL.canParse(url) || new URL(url).port !== '0', 'port 0 is no broker\'s port (mqtt://HOST:PORT, 1-65535; leave it out for 1883)');

/** Whether a URL (or text that is none: left to its own check) holds no user name or password. */
export function withoutCredentials(url: string): boolean {
  return !URL.canParse(url) || (new URL(url).username === '' && new URL(url).password === '');
}

/**
 * A device's broker URL. A user name or password in it would replace the device's own (its id and
 * secret, which the config holds), so the device could never log in, and the agent logs the URL.
 */
export const DeviceBrokerUrlSchema = BrokerUrlSchema.refine(
  withoutCredentials,
  "must not hold user:password@ (the device logs in with its own id and password, which its config holds; the URL is logged)",
);

/** MQTT's CONNECT carries the user name and password with a two-byte length: at most 65,535 bytes of UTF-8. */
export const MAX_MQTT_CREDENTIAL_BYTES = 65_535;

/**
 * A broker user name or password. A longer one made mqtt.js throw while it wrote CONNECT, after the
 * agent had started: an uncaught exception instead of a refusal at load.
 */
export const MqttCredentialSchema = mqttCredential(z.string().min(1));

/** `schema`, refusing what does not fit MQTT's CONNECT (see MqttCredentialSchema). */
export function mqttCredential(schema: z.ZodString): z.ZodString {
  return schema.refine((value) => Buffer.byteLength(value, 'utf8') <= MAX_MQTT_CREDENTIAL_BYTES, `must be at most ${MAX_MQTT_CREDENTIAL_BYTES} bytes of UTF-8 (MQTT's limit)`);
}

/**
 * The device's token for the server's HTTP API. One the Authorization header cannot carry failed
 * every download, with an error quoting the header: the token, on stderr.
 */
const DeviceTokenSchema = z
  .string()
  .min(1)
  .superRefine((token, ctx) => {
    const problem = bearerTokenProblem(token);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  });

export const AgentConfigSchema = z.strictObject({
  schema: z.literal(1, { error: 'must be 1: the config format this agent reads (a config from a newer server? upgrade the agent)' }),
  deviceId: DeviceIdSchema,
  labels: z.record(LabelKeySchema, z.string().max(MAX_LABEL_VALUE_CHARS)),
  broker: z.strictObject({
    url: DeviceBrokerUrlSchema,
    username: MqttCredentialSchema,
    password: MqttCredentialSchema,
  }),
  server: z.strictObject({
    url: ServerUrlSchema,
    token: DeviceTokenSchema,
  }),
  serverPublicKey: z.string().includes('BEGIN PUBLIC KEY', { message: 'must be an SPKI PEM public key' }),
});
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

/** The largest agent config file read (a real one is well under 4 KiB: ids, credentials, a PEM key, labels). */
export const MAX_AGENT_CONFIG_BYTES = 1024 * 1024;

/** Reads and validates an agent config file; every problem is a one-line UserError. */
export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    // A FIFO, a device or a directory is refused without reading it (a FIFO would block for good).
    text = await readRegularFile(path, MAX_AGENT_CONFIG_BYTES);
  } catch (error) {
    // NotARegularFileError's message starts with the path: `PATH: not a regular file`. A system
    // error in plain words (`no such file or directory`, `permission denied`), as `verify --public-key` says it.
    throw new UserError(`cannot read agent config ${error instanceof NotARegularFileError ? error.message : `${path}: ${describeFsError(error)}`}`, { cause: error });
  }
  // A byte order mark (Notepad's "UTF-8 with BOM") is no part of the JSON: JSON.parse refused it as an invalid symbol.
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON.parse's message: it quotes the text around the error, and this file holds the device's secrets.
    throw new UserError(`${path}: not valid JSON (${jsonProblemAt(text)})`);
  }
  // The schema would drop a `__proto__` label without a word, and the device would enrol in fewer cohorts than its file says.
  // It also refuses deep nesting, before the duplicate-key scan below walks the text.
  const problem = untrustedDataProblem(json);
  if (problem) throw new UserError(`${path}: ${describeDataProblem(problem, '')}`);
  // JSON.parse keeps the last of two equal keys: a second "deviceId" would make the agent another device on this one's data dir.
  const duplicate = duplicateJsonKey(text);
  if (duplicate !== null) throw new UserError(`${path}: ${JSON.stringify(duplicate)} is given twice`);
  const parsed = AgentConfigSchema.safeParse(json);
  if (!parsed.success) throw new UserError(`${path}: ${describeZodError(parsed.error, '', 'the config')}`);
  serverPublicKeyOf(parsed.data, path);
  return parsed.data;
}

/** What is wrong with a text JSON.parse refused, and where (line and column), without quoting it. */
function jsonProblemAt(text: string): string {
  // jsonc-parser's parse recurses per level of nesting: 200,000 '[' overflow the call stack. A loop
  // with a counter finds a text nested that deep first, and where.
  const tooDeep = nestingBeyond(text, MAX_NESTING_DEPTH);
  if (tooDeep !== null) return `nested deeper than ${MAX_NESTING_DEPTH} levels at ${lineAndColumn(text, tooDeep)}`;
  const errors: ParseError[] = [];
  parseJsonc(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  if (!first) return 'it does not parse';
  // `InvalidSymbol` → `invalid symbol`
  const what = printParseErrorCode(first.error).replace(/(?!^)([A-Z])/g, ' $1').toLowerCase();
  return `${what} at ${lineAndColumn(text, first.offset)}`;
}

// jsonc-parser's SyntaxKind is a const enum (esbuild cannot inline it from a declaration file): 1 `{`, 2 `}`, 3 `[`, 4 `]`, 17 end of text.
/** The offset of the first `[` or `{` opening a level deeper than `maxDepth`, or null; reads the tokens in one loop. */
function nestingBeyond(text: string, maxDepth: number): number | null {
  const scanner = createScanner(text, true);
  let depth = 0;
  for (let token = scanner.scan(); token !== 17; token = scanner.scan()) {
    if (token === 1 || token === 3) {
      if (++depth > maxDepth) return scanner.getTokenOffset();
    } else if ((token === 2 || token === 4) && depth > 0) {
      depth--;
    }
  }
  return null;
}

/** The pinned ed25519 key of an agent config. */
export function serverPublicKeyOf(config: AgentConfig, source = 'agent config'): KeyObject {
  const shape = pemShapeProblem(config.serverPublicKey, 'a device pins the one key of its server');
  if (shape) throw new UserError(`${source}: serverPublicKey: ${shape}`);
  let key: KeyObject;
  try {
    key = createPublicKey(config.serverPublicKey);
  } catch (error) {
    throw new UserError(`${source}: serverPublicKey: not a PEM public key (${errorMessage(error)})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UserError(`${source}: serverPublicKey: not an ed25519 key`);
  return key;
}
