import type { QoS } from '../../shared/protocol/topics.ts';

/** Handles one message; the broker acknowledges it (where it can) only after the promise settles. */
export type MessageHandler = (topic: string, payload: Buffer) => Promise<void>;

export interface PublishOptions {
  qos: QoS;
  retain: boolean;
}

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
  subscribe(filter: string, handler: MessageHandler): Promise<void>;
  publish(topic: string, payload: Buffer, options: PublishOptions): Promise<void>;
  credentialsChanged(): Promise<void>;
}
