import { chunksOf, ID_CHUNK } from './id-chunks.ts';
import type { SqlExecutor } from '../sql-engine.ts';

export interface TokenRecord {
  id: string;
  role: string;
  label: string;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
  /** When the token stops working (ISO 8601, UTC); null: never. */
  expiresAt: string | null;
}

/** SQL for bearer tokens; only their SHA-256 is stored. */
export class TokensRepository {
  constructor(private readonly db: SqlExecutor) {}

  async insert(record: TokenRecord & { tokenHash: string }): Promise<void> {
    await this.db.run('INSERT INTO tokens (id, token_hash, role, label, created_at, created_by, revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', tokenParams(record));
  }

  /** Inserts the token unless its id or hash is taken (the row there is left as it is); false then. */
  async insertIfAbsent(record: TokenRecord & { tokenHash: string }): Promise<boolean> {
    const sql = 'INSERT INTO tokens (id, token_hash, role, label, created_at, created_by, revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING';
    return (await this.db.run(sql, tokenParams(record))).changes > 0;
  }

  /** The token with this hash that is not revoked (it may have expired: the caller says so). */
  async findByHash(tokenHash: string): Promise<TokenRecord | undefined> {
    const row = await this.db.get('SELECT * FROM tokens WHERE token_hash = ? AND revoked_at IS NULL', [tokenHash]);
    return row ? toToken(row) : undefined;
  }

  /** The token, live or revoked, whose SHA-256 is `tokenHash`. */
  async findByHashAny(tokenHash: string): Promise<TokenRecord | undefined> {
    const row = await this.db.get('SELECT * FROM tokens WHERE token_hash = ?', [tokenHash]);
    return row ? toToken(row) : undefined;
  }

  /** The stored SHA-256 of token `id` (live or revoked). */
  async hashOf(id: string): Promise<string | undefined> {
    const row = await this.db.get('SELECT token_hash FROM tokens WHERE id = ?', [id]);
    return row ? String(row.token_hash) : undefined;
  }

  async get(id: string): Promise<TokenRecord | undefined> {
    const row = await this.db.get('SELECT * FROM tokens WHERE id = ?', [id]);
    return row ? toToken(row) : undefined;
  }

  async list(): Promise<TokenRecord[]> {
    return (await this.db.all('SELECT * FROM tokens ORDER BY created_at, id')).map(toToken);
  }

  /** Tokens of `role` neither revoked nor expired at `now`. */
  async countLiveWithRole(role: string, now: Date = new Date()): Promise<number> {
    const sql = 'SELECT COUNT(*) AS n FROM tokens WHERE role = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)';
    return Number((await this.db.get(sql, [role, now.toISOString()]))?.n ?? 0);
  }

  /** The tokens among `ids` that no longer work at `now`: revoked (`revokedAt`), or expired (`expiresAt`). */
  async endedAmong(ids: readonly string[], now: Date = new Date()): Promise<{ id: string; revokedAt: string | null; expiresAt: string | null }[]> {
    const ended: { id: string; revokedAt: string | null; expiresAt: string | null }[] = [];
    for (const chunk of chunksOf([...ids], ID_CHUNK)) {
      const sql = `SELECT id, revoked_at, expires_at FROM tokens WHERE (revoked_at IS NOT NULL OR expires_at <= ?) AND id IN (${chunk.map(() => '?').join(', ')})`;
      for (const row of await this.db.all(sql, [now.toISOString(), ...chunk])) {
        ended.push({ id: String(row.id), revokedAt: row.revoked_at === null ? null : String(row.revoked_at), expiresAt: row.expires_at === null ? null : String(row.expires_at) });
      }
    }
    return ended;
  }

  async revoke(id: string, at: string): Promise<boolean> {
    return (await this.db.run('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [at, id])).changes > 0;
  }

  /**
   * Gives token `id` a new hash, live again and created `at` (a new value is a token of its own
   * age), if it still has the hash and revocation read before; false when another start (or a
   * revocation) changed it since: the caller reads it again.
   */
  async replaceHash(id: string, tokenHash: string, at: string, expected: { tokenHash: string; revokedAt: string | null }): Promise<boolean> {
    const sql = "UPDATE tokens SET token_hash = ?, revoked_at = NULL, created_at = ? WHERE id = ? AND token_hash = ? AND COALESCE(revoked_at, '') = ?";
    return (await this.db.run(sql, [tokenHash, at, id, expected.tokenHash, expected.revokedAt ?? ''])).changes > 0;
  }
}

function tokenParams(record: TokenRecord & { tokenHash: string }): (string | null)[] {
  return [record.id, record.tokenHash, record.role, record.label, record.createdAt, record.createdBy, record.revokedAt, record.expiresAt];
}

function toToken(row: Record<string, unknown>): TokenRecord {
  return {
    id: String(row.id),
    role: String(row.role),
    label: String(row.label),
    createdAt: String(row.created_at),
    createdBy: String(row.created_by),
    revokedAt: row.revoked_at === null ? null : String(row.revoked_at),
    expiresAt: row.expires_at === null || row.expires_at === undefined ? null : String(row.expires_at),
  };
}
