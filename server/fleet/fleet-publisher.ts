import type { KeyObject } from 'node:crypto';
import { signAssignment, signFleetCommand, type UnsignedAssignment } from '../../shared/protocol/message-signature.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { encodePayload } from '../../shared/protocol/parse-message.ts';
import { AssignmentSchema, FleetCommandSchema, type Assignment, type FleetCommand, type Role, type Selector } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC, TOPIC_DELIVERY, assignmentTopic } from '../../shared/protocol/topics.ts';
import type { Broker } from '../broker/broker.ts';

export interface AssignmentInput {
  model: string;
  version: string;
  /** The artifact id. */
  sha256: string;
  role: Role;
  /** The server's base URL, e.g. http://fleet.example:8080 (the manifest URL is derived from it). */
  serverUrl: string;
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
  });
}

/** Publishes an assignment payload on the device's retained assignment topic (e.g. again after a restart). */
export async function publishAssignmentPayload(broker: Broker, deviceId: string, assignment: Assignment): Promise<void> {
  const { qos, retain } = TOPIC_DELIVERY.assignment;
  await broker.publish(assignmentTopic(deviceId), encodePayload(assignment), { qos, retain });
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
  const { qos, retain } = TOPIC_DELIVERY.commands;
  await broker.publish(FLEET_COMMANDS_TOPIC, encodePayload(payload), { qos, retain });
  return payload;
}

let lastLocal = 0;

/** Microseconds since the epoch, strictly increasing in this process (for publishers without a store). */
function localSequence(): number {
  lastLocal = Math.max(lastLocal + 1, Date.now() * 1000);
  return lastLocal;
}
