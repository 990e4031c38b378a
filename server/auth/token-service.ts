import { randomBytes } from 'node:crypto';
import { TokenRevocations, whyEnded } from './token-revocations.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import type { Store } from '../store/store.ts';
import { UniqueViolation } from '../store/sql-engine.ts';
import type { TokenRecord } from '../store/repositories/tokens-repository.ts';
import { ServiceError } from '../app/service-error.ts';
import { UserError } from '../../shared/util/errors.ts';
import { actorOf, SYSTEM_ACTOR, type Principal } from './principal.ts';
import { roleAllows, RoleSchema, type Permission, type Role } from './roles.ts';

export const TOKEN_PREFIX = 'fp_';
export const ENV_ADMIN_TOKEN_ID = 'env-admin';

export interface CreatedToken {
  record: TokenRecord;
  /** The secret itself; shown once, never stored. */
  token: string;
}

/** Issues, checks and lists bearer tokens. Tokens are 32 random bytes; only their SHA-256 is stored. */
export class TokenService {
  /** Streams authorized with a token stop when it is revoked: at once on this server, within seconds on another. */
  readonly revocations: TokenRevocations;

  readonly #tokenHolder: ((tokenId: string) => Promise<string | undefined>) | undefined;

  /** `tokenHolder`: the enrolled device whose own token `tokenId` is (revoked with the device, not alone). */
  constructor(
    private readonly store: Store,
    options: { revocationPollMs?: number; tokenHolder?: (tokenId: string) => Promise<string | undefined> } = {},
  ) {
    this.#tokenHolder = options.tokenHolder;
    this.revocations = new TokenRevocations({ endedAmong: async (ids) => (await this.store.tokens.endedAmong(ids)).map((token) => ({ id: token.id, why: whyEnded(token) })), pollMs: options.revocationPollMs });
  }

  /** `expiresInSeconds`: the token stops working that long from now (as if revoked then); omitted, never. */
  async create(role: Role, label: string, createdBy: string, options: { expiresInSeconds?: number } = {}): Promise<CreatedToken> {
    const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const now = new Date();
    const record: TokenRecord = {
      id: randomBytes(8).toString('hex'),
      role,
      label,
      createdAt: now.toISOString(),
      createdBy,
      revokedAt: null,
      expiresAt: options.expiresInSeconds === undefined ? null : new Date(now.getTime() + options.expiresInSeconds * 1000).toISOString(),
    };
    await this.store.transaction(async (tx) => {
      await tx.tokens.insert({ ...record, tokenHash: sha256Hex(token) });
      const details = record.expiresAt === null ? { role, label } : { role, label, expiresAt: record.expiresAt };
      await tx.audit.append({ at: record.createdAt, actor: createdBy, action: 'token.create', target: `token:${record.id}`, details });
    });
    return { record, token };
  }

  async revoke(id: string, principal: Principal): Promise<void> {
    const at = new Date().toISOString();
    // A device's own token (its artifact downloads) goes with the device: revoked alone, it left an
    // enrolled device that could fetch no model, every assignment to it failing. (Its revocation
    // revokes the token in the same transaction; a token, once a device's, stays its.)
    const device = await this.#tokenHolder?.(id);
    if (device !== undefined && (await this.store.tokens.get(id))?.revokedAt === null) {
      throw new ServiceError('conflict', `token ${id} is device ${device}'s own; revoke the device instead (fleetprune devices revoke ${device}, or DELETE /api/devices/${device}), which revokes its token too`);
    }
    await this.store.transaction(async (tx) => {
      if (!(await tx.tokens.revoke(id, at))) {
        // Revoking twice is a conflict, as it is for a device; only an id never issued is not found.
        if (await tx.tokens.get(id)) throw new ServiceError('conflict', `token ${id} is already revoked`);
        throw new ServiceError('not_found', `no token ${id}`);
      }
      // The last admin token gone, no one could administer the server (tokens, blob collection)
      // until a restart made a new one: refused, the revocation rolled back. (Expired ones do not
      // count: when every admin token has expired, the next start makes a new one, as on the first.)
      if ((await tx.tokens.countLiveWithRole('admin')) === 0) {
        throw new ServiceError('conflict', `token ${id} is the last live admin token: revoked, no one could administer the server until a restart made a new one; create another first (fleetprune tokens create --role admin)`);
      }
      await tx.audit.append({ at, actor: actorOf(principal), action: 'token.revoke', target: `token:${id}`, details: {} });
    });
    this.revocations.revoked(id);
  }

  list(): Promise<TokenRecord[]> {
    return this.store.tokens.list();
  }

  /**
   * Makes sure an admin can log in: FLEETPRUNE_ADMIN_TOKEN becomes (or replaces) the `env-admin`
   * token; without it, a new admin token is created when no live admin token exists, and returned
   * so the caller can print it once. An `env-admin` value that was revoked stays revoked (a leaked
   * token left in an env file must not come back): while the variable holds it, and when it is set
   * again after a new value replaced it (kept as a revoked token `env-admin-revoked-…`); `warn`
   * says so. A new value replaces it, audited.
   */
  async bootstrapAdmin(envToken: string | undefined, warn: (message: string) => void = () => {}): Promise<string | null> {
    if (envToken !== undefined) {
      const hash = sha256Hex(envToken);
      // Inserted unless it exists, in one statement: two servers starting at once both found no
      // row, and the second INSERT failed its start-up. When it exists, it is checked below.
      const created = await this.store.tokens.insertIfAbsent({
        id: ENV_ADMIN_TOKEN_ID,
        tokenHash: hash,
        role: 'admin',
        label: 'FLEETPRUNE_ADMIN_TOKEN',
        createdAt: new Date().toISOString(),
        createdBy: SYSTEM_ACTOR,
        revokedAt: null,
        expiresAt: null,
      });
      if (created) return null;
      const heldByAnother = () => new UserError('FLEETPRUNE_ADMIN_TOKEN holds the value of another token the server has (the admin token it printed at its first start, say: that one works as it is, without FLEETPRUNE_ADMIN_TOKEN); leave it unset, or set a new value');
      // Read, decided and written only if unchanged since the read: another server starting at once,
      // or an operator revoking the value meanwhile, makes it read again (a revocation is never undone).
      for (let attempt = 1; ; attempt++) {
        const existing = await this.store.tokens.get(ENV_ADMIN_TOKEN_ID);
        const storedHash = await this.store.tokens.hashOf(ENV_ADMIN_TOKEN_ID);
        if (!existing || storedHash === undefined) throw heldByAnother();
        if (storedHash === hash) {
          if (existing.revokedAt) warn(`FLEETPRUNE_ADMIN_TOKEN holds the env-admin token that was revoked at ${existing.revokedAt}; it stays revoked (set a new value to make a new one)`);
          return null;
        }
        // A value revoked before (kept as a revoked token below when a new value replaced it): set
        // again (an old env file restored, a configuration rolled back), it stays revoked.
        const earlier = await this.store.tokens.findByHashAny(hash);
        if (earlier?.revokedAt && earlier.id.startsWith(`${ENV_ADMIN_TOKEN_ID}-revoked-`)) {
          warn(`FLEETPRUNE_ADMIN_TOKEN holds an env-admin value that was revoked at ${earlier.revokedAt} (kept as token ${earlier.id}); it stays revoked, and env-admin keeps its current value (set a new value to replace it)`);
          return null;
        }
        const replaced = await this.store.transaction(async (tx) => {
          const now = new Date().toISOString();
          try {
            if (!(await tx.tokens.replaceHash(ENV_ADMIN_TOKEN_ID, hash, now, { tokenHash: storedHash, revokedAt: existing.revokedAt }))) return false;
          } catch (error) {
            // The new value is another token's (the hashes are unique).
            if (error instanceof UniqueViolation) throw heldByAnother();
            throw error;
          }
          // The revoked value is kept, revoked, under a token id of its own: else only the latest
          // value is remembered, and the revoked one set again later would replace the new one live.
          const keptAs = existing.revokedAt ? `${ENV_ADMIN_TOKEN_ID}-revoked-${Date.parse(existing.revokedAt).toString(36)}` : null;
          if (keptAs) await tx.tokens.insertIfAbsent({ ...existing, id: keptAs, label: 'FLEETPRUNE_ADMIN_TOKEN (a revoked value)', tokenHash: storedHash });
          // The id stays env-admin (the variable's token): what the audit log says token:env-admin
          // did before this entry was the previous value's, which this entry names.
          await tx.audit.append({
            at: now,
            actor: SYSTEM_ACTOR,
            action: 'token.replace',
            target: `token:${ENV_ADMIN_TOKEN_ID}`,
            details: {
              reason: 'FLEETPRUNE_ADMIN_TOKEN changed: entries of token:env-admin before this one are the previous value\'s',
              previousValue: { createdAt: existing.createdAt, revokedAt: existing.revokedAt, keptAs },
            },
          });
          return true;
        });
        if (replaced) return null;
        if (attempt >= 5) throw new Error('the env-admin token kept changing while this server started (other servers starting at once?); start it again');
      }
    }
    if ((await this.store.tokens.countLiveWithRole('admin')) > 0) return null;
    return (await this.create('admin', 'initial admin', SYSTEM_ACTOR)).token;
  }

  /** The principal behind an `Authorization` header value; a ServiceError 401 when there is none. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (!authorization) throw new ServiceError('unauthenticated', 'missing bearer token (send "Authorization: Bearer <token>")');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw new ServiceError('unauthenticated', 'malformed Authorization header (expected "Bearer <token>")');
    const record = await this.store.tokens.findByHash(sha256Hex(match[1]!));
    if (!record) throw new ServiceError('unauthenticated', 'unknown or revoked token');
    if (record.expiresAt !== null && Date.parse(record.expiresAt) <= Date.now()) {
      throw new ServiceError('unauthenticated', `token ${record.id} expired at ${record.expiresAt}; ask an admin for a new one (fleetprune tokens create)`);
    }
    const role = RoleSchema.safeParse(record.role);
    if (!role.success) throw new ServiceError('unauthenticated', 'token has an unknown role');
    return { tokenId: record.id, role: role.data, label: record.label };
  }

  /** authenticate, then require `permission`: 403 when the role is too weak. */
  async authorize(authorization: string | undefined, permission: Permission): Promise<Principal> {
    const principal = await this.authenticate(authorization);
    if (!roleAllows(principal.role, permission)) {
      throw new ServiceError('forbidden', `role ${principal.role} may not do this (needs ${describe(permission)})`);
    }
    return principal;
  }
}

function describe(permission: Permission): string {
  return { download: 'any token', read: 'viewer or higher', write: 'operator or admin', admin: 'admin' }[permission];
}
