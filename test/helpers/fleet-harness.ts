import { randomBytes, type KeyObject } from 'node:crypto';
import { Counter, Registry } from 'prom-client';
import type { Broker } from '../../server/broker/broker.ts';
import { DEFAULT_SERVER_USERNAME, type ServerIdentity } from '../../server/broker/credential-store.ts';
import { EmbeddedBroker } from '../../server/broker/embedded-broker.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import { InMemoryFleetIngest } from '../../server/fleet/in-memory-fleet-ingest.ts';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { createLogger } from '../../shared/util/log.ts';

/** The server side of the fleet protocol for tests: a broker, credentials, a receiver with counters. */
export interface FleetHarness {
  broker: Broker;
  credentials: InMemoryCredentialStore;
  server: ServerIdentity;
  ingest: InMemoryFleetIngest;
  registry: Registry;
  dropped: Counter<'kind' | 'reason'>;
  duplicates: Counter;
  droppedCount(reason?: string): Promise<number>;
  /** Enrolls a device and returns its agent config (server URL and key given by the caller). */
  enroll(deviceId: string, server: { url: string; token: string; publicKey: KeyObject }, labels?: Record<string, string>): Promise<AgentConfig>;
  stop(): Promise<void>;
}

export const testLogger = createLogger('test', (process.env.FLEETPRUNE_LOG_LEVEL as 'silent' | undefined) ?? 'silent');

export async function startFleetHarness(makeBroker: (credentials: InMemoryCredentialStore, server: ServerIdentity) => Broker | Promise<Broker>): Promise<FleetHarness> {
  const credentials = new InMemoryCredentialStore();
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(24).toString('base64url') };
  const broker = await makeBroker(credentials, server);
  const registry = new Registry();
  const dropped = new Counter({ name: PROTOCOL_METRICS.droppedMessages, help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const duplicates = new Counter({ name: PROTOCOL_METRICS.duplicateReports, help: 'duplicates', registers: [registry] });
  const ingest = new InMemoryFleetIngest();
  const receiver = new FleetReceiver({ broker, ingest, logger: testLogger, dropped, duplicates });
  try {
    await receiver.start();
    await broker.start();
  } catch (error) {
    // A start that failed half-way (an external broker that refused it) must not leave a client
    // reconnecting, or a listener bound, in a test process that would then never end.
    await broker.stop().catch(() => {});
    throw error;
  }
  return {
    broker,
    credentials,
    server,
    ingest,
    registry,
    dropped,
    duplicates,
    async droppedCount(reason?: string) {
      const values = (await dropped.get()).values;
      return values.filter((value) => reason === undefined || value.labels.reason === reason).reduce((sum, value) => sum + value.value, 0);
    },
    async enroll(deviceId, access, labels = {}) {
      const secret = await credentials.enroll(deviceId);
      await broker.credentialsChanged();
      return {
        schema: 1,
        deviceId,
        labels,
        broker: { url: broker.url, username: deviceId, password: secret },
        server: { url: access.url, token: access.token },
        serverPublicKey: access.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      };
    },
    stop: () => broker.stop(),
  };
}

export function startEmbeddedHarness(): Promise<FleetHarness> {
  return startFleetHarness((credentials, server) => new EmbeddedBroker({ port: 0, credentials, server, logger: testLogger }));
}
