import { sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson } from '../artifact/manifest.ts';
import type { Assignment, FleetCommand } from './payloads.ts';

/**
 * Signatures on what the server tells devices: each assignment (bound to the device it is for)
 * and each fleet command carries an ed25519 signature by the server's key, which every device
 * pins at enrollment. Together with the messages' sequence numbers, a device then acts only on
 * what the server sent it, and never on an older message replayed: someone who can publish on
 * the broker (leaked credentials, a man in the middle on plain mqtt://) can no longer send a
 * device back to an old or retired version, or roll it back.
 *
 * The signature covers the canonical JSON (shared/artifact/manifest.ts) of
 * `{purpose, deviceId, message}`, where `message` is the payload as sent without `signature`.
 */
export type UnsignedAssignment = Omit<Assignment, 'signature'>;
export type UnsignedFleetCommand = Omit<FleetCommand, 'signature'>;

const ASSIGNMENT_PURPOSE = 'fleetprune/v1 assignment';
const COMMAND_PURPOSE = 'fleetprune/v1 fleet command';

export function signAssignment(deviceId: string, assignment: UnsignedAssignment, privateKey: KeyObject): Assignment {
  const { signature: _previous, ...unsigned } = assignment as Assignment;
  return { ...unsigned, signature: signatureOf(ASSIGNMENT_PURPOSE, deviceId, unsigned, privateKey) };
}

export function signFleetCommand(command: UnsignedFleetCommand, privateKey: KeyObject): FleetCommand {
  const { signature: _previous, ...unsigned } = command as FleetCommand;
  return { ...unsigned, signature: signatureOf(COMMAND_PURPOSE, null, unsigned, privateKey) };
}

/** Whether `raw` (an assignment's JSON as received on `deviceId`'s topic) carries the server's signature for that device. */
export function assignmentSignatureVerifies(deviceId: string, raw: unknown, publicKey: KeyObject): boolean {
  return verifies(ASSIGNMENT_PURPOSE, deviceId, raw, publicKey);
}

/** Whether `raw` (a fleet command's JSON as received) carries the server's signature. */
export function commandSignatureVerifies(raw: unknown, publicKey: KeyObject): boolean {
  return verifies(COMMAND_PURPOSE, null, raw, publicKey);
}

function signatureOf(purpose: string, deviceId: string | null, message: object, privateKey: KeyObject): string {
  return sign(null, Buffer.from(canonicalJson({ purpose, deviceId, message })), privateKey).toString('base64');
}

function verifies(purpose: string, deviceId: string | null, raw: unknown, publicKey: KeyObject): boolean {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return false;
  const { signature, ...message } = raw as Record<string, unknown>;
  if (typeof signature !== 'string') return false;
  try {
    return verify(null, Buffer.from(canonicalJson({ purpose, deviceId, message })), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
