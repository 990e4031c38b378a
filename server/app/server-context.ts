import type { Logger } from '../../shared/util/log.ts';
import type { ServerConfig } from '../config/server-config.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';
import type { ServerSigningKey } from '../artifacts/server-signing-key.ts';
import type { TrustedKeys } from '../artifacts/trusted-keys.ts';
import type { AuditService } from '../auth/audit-service.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { JobService } from '../jobs/job-service.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import type { Store } from '../store/store.ts';
import type { Mutex } from '../../shared/util/mutex.ts';
import type { StalledStreams } from './stalled-streams.ts';

/** The shared services every server module is built from. */
export interface ServerContext {
  config: ServerConfig;
  log: Logger;
  store: Store;
  blobs: BlobStore;
  signingKey: ServerSigningKey;
  trustedKeys: TrustedKeys;
  tokens: TokenService;
  audit: AuditService;
  registry: RegistryService;
  jobs: JobService;
  metrics: ServerMetrics;
  /**
   * The server's base URL as devices reach it (assignment manifest URLs, agent configs):
   * --public-url, else http(s)://<host>:<bound HTTP port>. Known once the HTTP listener is bound.
   */
  publicUrl: () => string;
  /** Settles once publicUrl() answers (absent: it always does). */
  publicUrlKnown?: Promise<void>;
  /** When an event stream (gRPC watch, REST server-sent events) whose client stopped reading is ended. */
  stalledStreams: StalledStreams;
  /**
   * Fleet changes that check what the others did take turns: a rollout's start (which reads the
   * devices' baselines) or rollback, and a direct assignment (which checks no rollout holds its
   * devices). All run in one process: rollouts on the leader, and assignments too whenever more
   * than one server runs (an external broker, LeaderOnlyFleetGate).
   */
  fleetChanges: Mutex;
}
