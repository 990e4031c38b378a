import type { QoS } from '../../shared/protocol/topics.ts';

/**
 * How a message came: `retained` when the broker sent it from its retained store because the
 * server subscribed (MQTT 3.1.1 sets the flag only then), not as it was published.
 */
export interface DeliveryInfo {
  retained: boolean;
}

/** Handles one message; the broker acknowledges it (where it can) only after the promise settles. */
export type MessageHandler = (topic: string, payload: Buffer, delivery?: DeliveryInfo) => Promise<void>;

export interface PublishOptions {
  qos: QoS;
  retain: boolean;
}

export type CredentialChange = { kind: 'enrolled'; deviceId: string };

/**
 * The server's view of the MQTT broker, embedded or external: where devices connect, and the
 * server's own privileged publish/subscribe. Credentials come from a CredentialStore; call
 * credentialsChanged() after enrolling or revoking a device.
 */
export interface Broker {
  /** mqtt://host:port that devices connect to (known after start()). */
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * `qos` (default 1) is what an external broker queues for the server while it is away: 0 for
   * messages whose latest one says it all (heartbeats carry cumulative counters), so they cannot
   * fill the server's queue and push out the reports behind them.
   */
  subscribe(filter: string, handler: MessageHandler, qos?: QoS): Promise<void>;
  publish(topic: string, payload: Buffer, options: PublishOptions): Promise<void>;
  /**
   * Device credentials changed in the store. `change` may say it was only an enrollment (a new
   * id: device ids are never reused), which asks nothing of a broker that reads the store at each
   * connect; without it the broker re-reads everything (a revocation).
   */
  credentialsChanged(change?: CredentialChange): Promise<void>;
  /**
   * Why the broker does not enforce the store's credentials yet (its last update failed, e.g.
   * Mosquitto's password and ACL files could not be rewritten, and it keeps retrying), or null
   * when it is up to date.
   */
  credentialsProblem(): string | null;
}
