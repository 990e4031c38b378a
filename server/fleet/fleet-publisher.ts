import type { KeyObject } from 'node:crypto';
import { signAssignment, signFleetCommand, type UnsignedAssignment } from '../../shared/protocol/message-signature.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { MAX_PAYLOAD_BYTES } from '../../shared/protocol/limits.ts';
import { encodePayload } from '../../shared/protocol/parse-message.ts';
import { AssignmentSchema, FleetCommandSchema, type Assignment, type FleetCommand, type Role, type Selector, type Signer } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC, TOPIC_DELIVERY, assignmentTopic, statusTopic } from '../../shared/protocol/topics.ts';
import type { Broker } from '../broker/broker.ts';

export interface AssignmentInput {
  model: string;
  version: string;
  /** The artifact id. */
  sha256: string;
  role: Role;
  /** The server's base URL, e.g. http://fleet.example:8080 (the manifest URL is derived from it). */
  serverUrl: string;
  /** The server's endorsement of the manifest's signer key, when that is not the server's own (shared/protocol/signer-endorsement.ts). */
  signer?: Signer;
  /** A rollout sending the device back to its baseline (Assignment.revert). */
  revert?: boolean;
  /**
   * The assignment id (default: a fresh one). A caller that may repeat an action after a crash
   * passes its own id; a device handles an id once.
   */
  id?: string;
}

/**
 * How the server signs what it publishes: its private key, and the message's sequence number
 * (the store's counter; without one, a clock-based number that only grows in this process).
 */
export interface MessageSigner {
  privateKey: KeyObject;
  seq?: number;
}

export function manifestUrl(serverUrl: string, artifactId: string): string {
  return `${serverUrl.replace(/\/+$/, '')}/api/artifacts/${artifactId}/manifest.json`;
}

/** The unsigned assignment payload for `input` (`issuedAt` is now). */
export function buildAssignment(input: AssignmentInput, seq: number): UnsignedAssignment {
  return AssignmentSchema.omit({ signature: true }).parse({
    schema: 1,
    id: input.id ?? newMessageId(),
    issuedAt: new Date().toISOString(),
    model: input.model,
    version: input.version,
    sha256: input.sha256,
    url: manifestUrl(input.serverUrl, input.sha256),
    role: input.role,
    seq,
    ...(input.signer ? { signer: input.signer } : {}),
    ...(input.revert ? { revert: true } : {}),
  });
}

/** Publishes an assignment payload on the device's retained assignment topic (e.g. again after a restart). */
export async function publishAssignmentPayload(broker: Broker, deviceId: string, assignment: Assignment): Promise<void> {
  const { qos, retain } = TOPIC_DELIVERY.assignment;
  await broker.publish(assignmentTopic(deviceId), encodePayload(assignment), { qos, retain });
}

/**
 * Removes the device's retained status (`online`/`offline`, which its agent publishes retained)
 * from the broker: an empty retained message on its status topic. For a revoked device, whose
 * last status would otherwise be handed to the server at each subscription (every leader start),
 * and dropped as from an unknown device each time. The server identity may publish anywhere under
 * the root (the embedded broker does not check its in-process publishes; Mosquitto's generated
 * ACL gives it `readwrite fleetprune/v1/#`).
 */
export async function clearRetainedStatus(broker: Broker, deviceId: string): Promise<void> {
  await broker.publish(statusTopic(deviceId), Buffer.alloc(0), { qos: TOPIC_DELIVERY.status.qos, retain: true });
}

/** Removes the message a broker retains on a device's reports or telemetry topic (a zero-byte retained publish), where nothing should be retained. */
export async function clearRetainedMessage(broker: Broker, topic: string): Promise<void> {
  await broker.publish(topic, Buffer.alloc(0), { qos: 1, retain: true });
}

/** Signs and publishes an assignment on a device's retained assignment topic and returns it. */
export async function publishAssignment(broker: Broker, deviceId: string, input: AssignmentInput, signer: MessageSigner): Promise<Assignment> {
  const assignment = signAssignment(deviceId, buildAssignment(input, signer.seq ?? localSequence()), signer.privateKey);
  await publishAssignmentPayload(broker, deviceId, assignment);
  return assignment;
}

/** Signs and publishes a fleet-wide command (devices matching `selector` act on it). */
export async function publishFleetCommand(broker: Broker, command: FleetCommand['command'], selector: Selector, signer: MessageSigner, id?: string): Promise<FleetCommand> {
  const unsigned = FleetCommandSchema.omit({ signature: true }).parse({ schema: 1, id: id ?? newMessageId(), issuedAt: new Date().toISOString(), command, selector, seq: signer.seq ?? localSequence() });
  const payload = signFleetCommand(unsigned, signer.privateKey);
  const bytes = encodePayload(payload);
  // Devices drop anything larger unread (too-large): refuse it here instead of losing it silently.
  if (bytes.length > MAX_PAYLOAD_BYTES) throw new Error(`fleet command ${payload.id} is ${bytes.length} bytes, above the ${MAX_PAYLOAD_BYTES}-byte payload limit`);
  const { qos, retain } = TOPIC_DELIVERY.commands;
  await broker.publish(FLEET_COMMANDS_TOPIC, bytes, { qos, retain });
  return payload;
}

/** Room left for the device ids of one command, below MAX_PAYLOAD_BYTES (the rest: ids, signature, labels). */
const COMMAND_ID_BUDGET = MAX_PAYLOAD_BYTES - 4096;

/**
 * Device ids in groups whose JSON fits one command payload: a command to more devices than one
 * message can name goes out as several messages with the same id (each device acts on the one
 * naming it; an id is handled once).
 */
export function commandChunks(deviceIds: readonly string[]): string[][] {
  const chunks: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const id of deviceIds) {
    const size = Buffer.byteLength(JSON.stringify(id)) + 1;
    if (current.length > 0 && bytes + size > COMMAND_ID_BUDGET) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(id);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

let lastLocal = 0;

/** Microseconds since the epoch, strictly increasing in this process (for publishers without a store). */
function localSequence(): number {
  lastLocal = Math.max(lastLocal + 1, Date.now() * 1000);
  return lastLocal;
}
