import type { z } from 'zod';
import { describeZodError } from '../util/errors.ts';
import { describeDataProblem, untrustedDataProblem } from '../util/untrusted-data.ts';
import { MAX_PAYLOAD_BYTES } from './limits.ts';
import { AssignmentSchema, FleetCommandSchema, ReportSchema, SCHEMA_VERSION, StatusSchema, TelemetrySchema } from './payloads.ts';
import type { Assignment, FleetCommand, Report, Status, Telemetry } from './payloads.ts';
import { parseTopic } from './topics.ts';

/** A validated message; `raw` is its JSON as sent (what a signature covers: readers drop fields they do not know). */
export type FleetMessage =
  | { kind: 'assignment'; deviceId: string; payload: Assignment; raw?: unknown }
  | { kind: 'status'; deviceId: string; payload: Status; raw?: unknown }
  | { kind: 'reports'; deviceId: string; payload: Report; raw?: unknown }
  | { kind: 'telemetry'; deviceId: string; payload: Telemetry; raw?: unknown }
  | { kind: 'commands'; deviceId?: undefined; payload: FleetCommand; raw?: unknown };

/** Why a message was dropped; the values label the `dropped messages` counters. */
export const DROP_REASONS = [
  'unknown-topic',
  'empty',
  'too-large',
  'not-utf8',
  'invalid-json',
  'unsupported-schema',
  'invalid-payload',
  'device-mismatch',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type ParseResult = { ok: true; message: FleetMessage } | { ok: false; reason: DropReason; detail: string };

const SCHEMAS = {
  assignment: AssignmentSchema,
  status: StatusSchema,
  reports: ReportSchema,
  telemetry: TelemetrySchema,
  commands: FleetCommandSchema,
} satisfies Record<FleetMessage['kind'], z.ZodType>;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Validates one MQTT message against the protocol: the topic must be in the layout, the payload
 * at most MAX_PAYLOAD_BYTES of UTF-8 JSON matching the topic's schema, and a device's own
 * messages must name the device of their topic. Never throws; a rejection carries a fixed
 * reason (for counters) and a one-line detail (for logs).
 */
export function parseMessage(topic: string, payload: Uint8Array): ParseResult {
  try {
    return parseUnchecked(topic, payload);
  } catch (error) {
    // Defensive: a schema bug must not take a process down.
    return { ok: false, reason: 'invalid-payload', detail: `unexpected validation failure: ${String(error)}` };
  }
}

function parseUnchecked(topic: string, payload: Uint8Array): ParseResult {
  const parsedTopic = parseTopic(topic);
  if (!parsedTopic) return { ok: false, reason: 'unknown-topic', detail: `topic ${JSON.stringify(topic.slice(0, 200))} is not a fleet topic` };
  if (payload.length === 0) return { ok: false, reason: 'empty', detail: 'empty payload' };
  if (payload.length > MAX_PAYLOAD_BYTES) {
    return { ok: false, reason: 'too-large', detail: `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}` };
  }
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, reason: 'not-utf8', detail: 'payload is not UTF-8 text' };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: 'invalid-json', detail: `payload is not JSON (${(error as Error).message})` };
  }
  if (json !== null && typeof json === 'object' && 'schema' in json && json.schema !== SCHEMA_VERSION && typeof json.schema === 'number') {
    return { ok: false, reason: 'unsupported-schema', detail: `schema version ${json.schema} is not supported (this reader knows ${SCHEMA_VERSION})` };
  }
  // The schema would drop a `__proto__` key silently: `{"labels": {"__proto__": "x"}}` in a fleet
  // command's selector would become `{}`, which selects every device.
  const problem = untrustedDataProblem(json);
  if (problem) return { ok: false, reason: 'invalid-payload', detail: describeDataProblem(problem, 'payload') };
  const result = SCHEMAS[parsedTopic.kind].safeParse(json);
  if (!result.success) return { ok: false, reason: 'invalid-payload', detail: describeZodError(result.error) };
  const data = result.data as { deviceId?: string };
  if (parsedTopic.kind !== 'commands' && parsedTopic.kind !== 'assignment' && data.deviceId !== parsedTopic.deviceId) {
    return {
      ok: false,
      reason: 'device-mismatch',
      detail: `payload names device ${JSON.stringify(data.deviceId)} but was published on the topic of ${parsedTopic.deviceId}`,
    };
  }
  return { ok: true, message: { kind: parsedTopic.kind, deviceId: parsedTopic.deviceId, payload: result.data, raw: json } as FleetMessage };
}

/** Serializes a payload for publishing; the counterpart of parseMessage. */
export function encodePayload(payload: Assignment | Status | Report | Telemetry | FleetCommand): Buffer {
  return Buffer.from(JSON.stringify(payload));
}
