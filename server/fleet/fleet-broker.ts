import { randomBytes } from 'node:crypto';
import type { Counter } from 'prom-client';
import type { Logger } from '../../shared/util/log.ts';
import type { Broker } from '../broker/broker.ts';
import { DEFAULT_SERVER_USERNAME, type CredentialStore, type ServerIdentity } from '../broker/credential-store.ts';
import { EmbeddedBroker } from '../broker/embedded-broker.ts';
import { ExternalBroker } from '../broker/external-broker.ts';
import { reloadMosquittoFromPidFile } from '../broker/mosquitto-reload.ts';
import type { ServerConfig } from '../config/server-config.ts';

export interface FleetBroker {
  broker: Broker;
  /** The embedded broker's port; null for an external broker. */
  port(): number | null;
  /**
   * Whether the server's connection to the broker is up now: the external broker's MQTT client
   * (mqtt.js sets it at each CONNACK and clears it when the socket closes; false before start and
   * after stop). The embedded broker runs in the server's process: always connected.
   */
  connected(): boolean;
}

/**
 * The broker `fleetprune server` uses: the embedded one on --mqtt-port, or the external one at
 * --mqtt-url (as the server identity; with --mosquitto-dir the server writes Mosquitto's
 * password and ACL files there and, given --mosquitto-pid-file, makes it reload them).
 */
export function createFleetBroker(
  config: ServerConfig,
  credentials: CredentialStore,
  logger: Logger,
  denied: Counter<'reason'>,
  /** External broker: after a reconnect, the devices' retained assignments are published again (a restarted broker may have lost them). */
  republishRetained?: () => Promise<unknown>,
): FleetBroker {
  const server: ServerIdentity = { username: DEFAULT_SERVER_USERNAME, password: config.mqttPassword ?? randomBytes(24).toString('base64url') };
  if (config.mqttUrl === undefined) {
    const broker = new EmbeddedBroker({ port: config.mqttPort, host: config.host, credentials, server, logger, denied });
    return { broker, port: () => broker.port, connected: () => true };
  }
  const pidFile = config.mosquittoPidFile;
  const broker = new ExternalBroker({
    url: config.mqttUrl,
    server,
    credentials,
    logger,
    ...(republishRetained ? { onReconnect: republishRetained } : {}),
    ...(config.mosquittoDir ? { mosquittoAuth: { dir: config.mosquittoDir, reload: pidFile ? reloadMosquittoFromPidFile(pidFile) : async () => {} } } : {}),
  });
  return { broker, port: () => null, connected: () => broker.connected };
}
