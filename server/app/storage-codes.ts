// The system errors that say the server's storage is full or cannot be written: what
// asServiceError answers as insufficient_storage. A module of its own, free of dependencies, so a
// pruning worker thread names them without loading the server's RPC code.

/** The codes of a full disk or quota: node's (ENOSPC, EDQUOT), SQLite's (SQLITE_FULL) and PostgreSQL's disk_full (53100). */
export const STORAGE_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']);

/**
 * The codes of storage the server may not write: a read-only file system or database file, or
 * permissions taken away (a data dir remounted read-only, chowned to another user).
 */
export const STORAGE_UNWRITABLE_CODES = new Set(['EROFS', 'EACCES', 'EPERM', 'SQLITE_READONLY']);

/** Whether `code` is a system error's that says the server's storage is full or cannot be written (asServiceError's insufficient_storage). */
export function isStorageFailureCode(code: string | undefined): boolean {
  return code !== undefined && (STORAGE_FULL_CODES.has(code) || STORAGE_UNWRITABLE_CODES.has(code));
}
