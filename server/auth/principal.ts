import type { Role } from './roles.ts';

/** Who is calling: the token's id, role and label. `actor` is how the audit log names them. */
export interface Principal {
  tokenId: string;
  role: Role;
  label: string;
}

export function actorOf(principal: Principal): string {
  return `token:${principal.tokenId}`;
}

/** The server acting on its own behalf (bootstrap, pruning jobs' registrations keep the job's caller). */
export const SYSTEM_ACTOR = 'system';
