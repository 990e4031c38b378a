import { AuditRepository } from './repositories/audit-repository.ts';
import { JobsRepository } from './repositories/jobs-repository.ts';
import { ModelsRepository } from './repositories/models-repository.ts';
import { TokensRepository } from './repositories/tokens-repository.ts';
import type { Dialect, SqlEngine, SqlExecutor } from './sql-engine.ts';

/** The per-domain repositories, bound to one executor (the engine, or an open transaction). */
export interface Repositories {
  readonly models: ModelsRepository;
  readonly tokens: TokensRepository;
  readonly audit: AuditRepository;
  readonly jobs: JobsRepository;
}

/**
 * The server's persistent state. Repositories outside a transaction run each statement on its
 * own; `transaction` hands the same repositories bound to one transaction. `engine` gives raw
 * access (PostgreSQL advisory locks, new domains' repositories).
 */
export interface Store extends Repositories {
  readonly engine: SqlEngine;
  transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function repositoriesOf(db: SqlExecutor, dialect: Dialect): Repositories {
  return {
    models: new ModelsRepository(db),
    tokens: new TokensRepository(db),
    audit: new AuditRepository(db),
    jobs: new JobsRepository(db, dialect),
  };
}

export function createStore(engine: SqlEngine): Store {
  return {
    engine,
    ...repositoriesOf(engine, engine.dialect),
    transaction: (work) => engine.transaction((tx) => work(repositoriesOf(tx, engine.dialect))),
    close: () => engine.close(),
  };
}
