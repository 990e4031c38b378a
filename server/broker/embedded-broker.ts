import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Counter } from 'prom-client';
import { BROKER_MAX_PACKET_BYTES, DEVICE_MAX_PACKET_BYTES } from '../../shared/protocol/limits.ts';
import { DroppedMessageLog } from '../../shared/util/dropped-message-log.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { Broker, CredentialChange, MessageHandler, PublishOptions } from './broker.ts';
import { Mutex } from '../../shared/util/mutex.ts';
import type { CredentialStore, ServerIdentity } from './credential-store.ts';
import { PacketSizeGuard } from './packet-size-guard.ts';
import { verifyPassword } from './password-hash.ts';
import { deviceMayPublish, deviceMaySubscribe } from './topic-acl.ts';
import { timingSafeEqual } from 'node:crypto';
import { errorMessage } from '../../shared/util/errors.ts';

/** The part of aedes' persistence (aedes-persistence) used here: promise-returning without a callback. */
interface SessionStore {
  subscriptionsByClient(client: { id: string }): Promise<{ topic: string }[]>;
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  outgoingStream(client: { id: string }): AsyncIterable<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown>;
  /** aedes-persistence 10+: the client's stored inbound QoS 2 packets (awaiting PUBREL). */
  cleanIncoming?(client: { id: string }): Promise<unknown>;
}

export interface EmbeddedBrokerOptions {
  /** TCP port; 0 picks an ephemeral one (read it from `port` after start()). */
  port: number;
  host?: string;
  credentials: CredentialStore;
  server: ServerIdentity;
  logger: Logger;
  /** Counts refused connects, publishes and subscribes, labelled by `reason`. */
  denied?: Counter<'reason'>;
  /** How long a connection may take to send its CONNECT packet before it is dropped (default 10 s). */
  connectTimeoutMs?: number;
  /** Refused publishes and subscriptions are logged at most once per device per this many ms (default a minute; every one is counted in `denied`). */
  refusalLogEveryMs?: number;
}

// aedes' AuthErrorCode is a const enum, which isolatedModules cannot import.
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

/**
 * A CONNECT is a few hundred bytes; a connection that has not sent one by then is dropped (aedes'
 * own default is 30 s). aedes stops the clock when the packet is parsed, before the password
 * check, so a slow check during a fleet-wide reconnect does not count against it.
 */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The largest CONNECT accepted: it is read before the password is checked, so any client may
 * send one. Ours are a few hundred bytes (ids, a password, a small will).
 */
const MAX_CONNECT_BYTES = 64 * 1024;

/** How much of a refused topic or filter a log line shows (a topic may be 64 KiB). */
const LOGGED_TOPIC_CHARS = 200;

/**
 * A device whose SUBSCRIBEs name this many filters outside its topics on one connection is
 * disconnected: agents subscribe only to their own topics, so it is not one of them.
 */
const MAX_REFUSED_FILTERS = 16;

/**
 * Inbound QoS 2 messages a connection may leave waiting for their PUBREL (aedes keeps each in
 * its persistence until then). Devices may not publish at QoS 2 at all; this bounds any other client.
 */
const MAX_INFLIGHT_INBOUND = 16;

/** How soon a credentials pass that failed runs again (as the external broker's TRAILING_RELOAD_MS). */
const RETRY_PASS_MS = 1000;

/**
 * The aedes 1.2 broker (MQTT 3.1.1) inside the server process, with authentication against the
 * CredentialStore and the fleet's topic ACL. The server's own subscriptions are in-process and
 * are registered before the listener opens, so a restart of the broker never misses a message.
 */
export class EmbeddedBroker implements Broker {
  readonly #options: EmbeddedBrokerOptions;
  readonly #handlers: { filter: string; handler: MessageHandler }[] = [];
  readonly #sockets = new Set<Socket>();
  #aedes: Aedes | undefined;
  #tcp: Server | undefined;
  #port: number;
  /** Refused publishes and subscriptions, logged at most once a minute per device (a device may send thousands a second). */
  readonly #refusalLog: DroppedMessageLog;

  constructor(options: EmbeddedBrokerOptions) {
    this.#options = options;
    this.#port = options.port;
    this.#refusalLog = new DroppedMessageLog(options.logger, options.refusalLogEveryMs === undefined ? {} : { everyMs: options.refusalLogEveryMs });
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    const host = this.#options.host ?? '127.0.0.1';
    // An IPv6 address in brackets, as in any URL.
    return `mqtt://${host.includes(':') ? `[${host}]` : host}:${this.#port}`;
  }

  /** Revoked device ids, refreshed at start and on every credentials change. */
  #revoked = new Set<string>();
  /** A full credentials pass failed and must run again: on the retry timer or the next change, enrollment or not. */
  #passOwed = false;
  readonly #passes = new Mutex();
  #retryPass: NodeJS.Timeout | undefined;

  get connectedClients(): number {
    return this.#aedes?.connectedClients ?? 0;
  }

  async start(): Promise<void> {
    if (this.#tcp) return;
    await this.#refreshRevoked();
    const aedes = await Aedes.createBroker({
      id: 'fleetprune-embedded',
      connectTimeout: this.#options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      maxInflightInbound: MAX_INFLIGHT_INBOUND,
      authenticate: (client, username, password, done) => {
        this.#authenticate(client, username, password).then(
          (refusal) => {
            if (refusal === null) {
              // Connections start at the device limit; the server's own may send larger messages.
              if (this.#isServer(client) && client.conn instanceof PacketSizeGuard) client.conn.setLimit(BROKER_MAX_PACKET_BYTES);
              return done(null, true);
            }
            this.#deny(refusal);
            const error = Object.assign(new Error(refusal), { returnCode: refusal === 'revoked' || refusal === 'bad-credentials' ? BAD_USERNAME_OR_PASSWORD : NOT_AUTHORIZED }) as AuthenticateError;
            done(error, false);
          },
          (error: unknown) => {
            this.#options.logger.error({ err: error }, 'broker authentication failed');
            done(Object.assign(new Error('authentication failed'), { returnCode: 3 }) as AuthenticateError, false);
          },
        );
      },
      authorizePublish: (client, packet, done) => {
        if (client === null || this.#isServer(client)) return done(null);
        if (this.#revoked.has(client.id)) {
          // Connected while its revocation was under way (its connect checked the record before): out now.
          this.#deny('revoked');
          return done(new Error('revoked'));
        }
        // The protocol is QoS 1 throughout. aedes stores an inbound QoS 2 message until its PUBREL
        // (after this check), and a device could leave thousands waiting across persistent sessions.
        // The error closes the connection before anything is stored.
        if (packet.qos === 2) {
          this.#deny('qos2');
          this.#refusalLog.dropped(client.id, { deviceId: client.id, topic: packet.topic.slice(0, LOGGED_TOPIC_CHARS), qos: 2 }, 'refused a QoS 2 publish (the fleet protocol uses QoS 1); connection closed');
          return done(new Error('QoS 2 is not accepted from devices'));
        }
        // The connection's PacketSizeGuard refuses such a packet before it is read; this covers a
        // packet whose header it read before the connection had logged in (pipelined after the CONNECT).
        if (packet.payload.length > DEVICE_MAX_PACKET_BYTES) {
          this.#deny('too-large');
          this.#refusalLog.dropped(client.id, { deviceId: client.id, topic: packet.topic.slice(0, LOGGED_TOPIC_CHARS), bytes: packet.payload.length }, 'refused a publish over the device packet limit; connection closed');
          return done(new Error('payload too large'));
        }
        if (!deviceMayPublish(client.id, packet.topic)) {
          this.#deny('publish-acl');
          this.#refusalLog.dropped(client.id, { deviceId: client.id, topic: packet.topic.slice(0, LOGGED_TOPIC_CHARS), topicLength: packet.topic.length }, 'refused publish outside the device\'s topics; connection closed');
          return done(new Error('not authorized'));
        }
        done(null);
      },
      authorizeSubscribe: (client, subscription, done) => {
        if (!this.#isServer(client) && this.#revoked.has(client.id)) {
          this.#deny('revoked');
          client.close();
          return done(null, null);
        }
        // A QoS 2 subscription is granted as asked (aedes grants what the SUBSCRIBE asked), but every
        // message is published at QoS 1 (devices may not publish at QoS 2), and delivered at QoS 1.
        if (this.#isServer(client) || deviceMaySubscribe(client.id, subscription.topic)) return done(null, subscription);
        this.#deny('subscribe-acl');
        const refused = ((client as Client & { fleetpruneRefusedFilters?: number }).fleetpruneRefusedFilters ?? 0) + 1;
        (client as Client & { fleetpruneRefusedFilters?: number }).fleetpruneRefusedFilters = refused;
        this.#refusalLog.dropped(client.id, { deviceId: client.id, topic: subscription.topic.slice(0, LOGGED_TOPIC_CHARS), topicLength: subscription.topic.length }, 'refused subscription outside the device\'s topics');
        // A null subscription is refused in the SUBACK (0x80); the connection stays up, unless the
        // device keeps asking for what it may not have.
        if (refused >= MAX_REFUSED_FILTERS) {
          this.#options.logger.debug({ deviceId: client.id, refused }, 'disconnecting a device that keeps subscribing outside its topics');
          client.close();
        }
        done(null, null);
      },
    });
    // A client registers only after authentication's later steps; one revoked meanwhile is closed here.
    aedes.on('client', (client) => {
      if (!this.#isServer(client) && this.#revoked.has(client.id)) client.close();
    });
    aedes.on('clientError', (client, error) => this.#options.logger.debug({ clientId: client?.id, err: error.message }, 'mqtt client error'));
    aedes.on('connectionError', (client, error) => this.#options.logger.debug({ clientId: client?.id, err: error.message }, 'mqtt connection error'));
    for (const { filter, handler } of this.#handlers) await subscribeInProcess(aedes, filter, handler, this.#options.logger);
    const tcp = createServer((socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      // Every connection is held to a device's largest packet until it logs in as the server.
      aedes.handle(new PacketSizeGuard(socket, DEVICE_MAX_PACKET_BYTES, (refusal) => {
        this.#deny(refusal.reason);
        this.#options.logger.warn({ remoteAddress: socket.remoteAddress, ...refusal }, 'refused an MQTT packet declaring a length over the limit (or malformed); connection closed');
      }, MAX_CONNECT_BYTES));
    });
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(this.#port, this.#options.host ?? '127.0.0.1', () => {
        tcp.off('error', reject);
        resolve();
      });
    }).catch(async (error: unknown) => {
      // aedes keeps timers running; a broker that could not listen must not keep the process alive.
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      throw error;
    });
    this.#port = (tcp.address() as AddressInfo).port;
    this.#aedes = aedes;
    this.#tcp = tcp;
  }

  /** Closes every connection and the listener; start() again listens on the same port. */
  async stop(): Promise<void> {
    const aedes = this.#aedes;
    const tcp = this.#tcp;
    this.#aedes = undefined;
    this.#tcp = undefined;
    clearTimeout(this.#retryPass);
    this.#retryPass = undefined;
    if (!tcp || !aedes) return;
    const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<void> {
    this.#handlers.push({ filter, handler });
    if (this.#aedes) await subscribeInProcess(this.#aedes, filter, handler, this.#options.logger);
  }

  publish(topic: string, payload: Buffer, options: PublishOptions): Promise<void> {
    const aedes = this.#aedes;
    if (!aedes) return Promise.reject(new Error('the embedded broker is not running'));
    return new Promise((resolve, reject) => {
      aedes.publish({ cmd: 'publish', topic, payload, qos: options.qos, retain: options.retain, dup: false }, (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * Disconnects devices that were revoked or removed since they connected, and drops revoked
   * devices' persistent sessions: their subscriptions would otherwise queue every fleet command
   * for a device that can never connect again.
   */
  async credentialsChanged(change?: CredentialChange): Promise<void> {
    // A new device: nobody can be connected under its id yet, and it is not revoked. At 20,000
    // devices the full pass below costs ~0.3 s, once per enrollment. A pass that failed (the
    // store was down during a revocation) is owed, and the next call runs it whatever it is for.
    if (change?.kind === 'enrolled' && !this.#passOwed) return;
    // One pass at a time: a pass that succeeds after a failed one started after it, so it read
    // the store after the change the failed one was for, and may clear what was owed.
    await this.#passes.run(async () => {
      try {
        await this.#fullPass();
        if (this.#passProblem !== null) this.#options.logger.info('the broker\'s credentials pass succeeded again; revoked devices are disconnected');
        this.#passOwed = false;
        this.#passProblem = null;
      } catch (error) {
        this.#passOwed = true;
        this.#passProblem = `the embedded broker could not check its connected devices (${errorMessage(error)})`;
        this.#retryPassLater();
        throw error;
      }
    });
  }

  #passProblem: string | null = null;

  credentialsProblem(): string | null {
    return this.#passProblem;
  }

  /**
   * A failed pass (the store briefly down during a revocation) left a revoked device connected
   * and publishing; waiting for the next change could take days. Retried every second while the
   * store keeps failing, and only while the broker runs.
   */
  #retryPassLater(): void {
    if (this.#retryPass || !this.#aedes) return;
    this.#retryPass = setTimeout(() => {
      this.#retryPass = undefined;
      // A change's pass may have run meanwhile and settled what was owed.
      if (!this.#passOwed) return;
      this.credentialsChanged().catch((error: unknown) => this.#options.logger.warn({ err: errorMessage(error) }, 'the broker\'s credentials pass failed again; retrying'));
    }, RETRY_PASS_MS);
    this.#retryPass.unref();
  }

  async #fullPass(): Promise<void> {
    await this.#refreshRevoked();
    const aedes = this.#aedes;
    if (!aedes) return;
    const clients = (aedes as unknown as { clients: Record<string, Client> }).clients;
    for (const client of Object.values(clients)) {
      if (this.#isServer(client)) continue;
      const device = await this.#options.credentials.getDevice(client.id);
      if (!device || device.revoked) {
        this.#options.logger.info({ deviceId: client.id }, 'disconnecting a revoked device');
        client.close();
      }
    }
    const persistence = this.#persistence(aedes);
    for (const device of await this.#options.credentials.listDevices()) {
      if (!device.revoked) continue;
      const id = { id: device.deviceId };
      if ((await persistence.subscriptionsByClient(id)).length > 0) await persistence.cleanSubscriptions(id);
      // What its persistent session still holds: inbound QoS 2 messages awaiting a PUBREL, and
      // messages queued for it. Neither will ever be delivered.
      await persistence.cleanIncoming?.(id);
      const queued: { messageId?: number }[] = [];
      for await (const packet of persistence.outgoingStream(id)) queued.push(packet as { messageId?: number });
      for (const packet of queued) await persistence.outgoingClearMessageId(id, packet);
    }
  }

  /** The topics a client's persistent session subscribes to ([] without a session); for diagnostics. */
  async sessionTopics(clientId: string): Promise<string[]> {
    if (!this.#aedes) return [];
    return (await this.#persistence(this.#aedes).subscriptionsByClient({ id: clientId })).map((subscription) => subscription.topic);
  }

  /** How many messages wait in a client's persistent session for it to connect; for diagnostics. */
  async queuedMessages(clientId: string): Promise<number> {
    if (!this.#aedes) return 0;
    let count = 0;
    for await (const _ of this.#persistence(this.#aedes).outgoingStream({ id: clientId })) count++;
    return count;
  }

  /** The revoked device ids, read again from the credentials (connects, publishes and subscriptions check it). */
  async #refreshRevoked(): Promise<void> {
    const revoked = (await this.#options.credentials.listDevices()).filter((device) => device.revoked).map((device) => device.deviceId);
    this.#revoked = new Set(revoked);
  }

  #persistence(aedes: Aedes): SessionStore {
    return (aedes as unknown as { persistence: SessionStore }).persistence;
  }

  #isServer(client: Client): boolean {
    return (client as Client & { fleetpruneServer?: boolean }).fleetpruneServer === true;
  }

  #deny(reason: string): void {
    this.#options.denied?.inc({ reason });
  }

  /** Null when the client may connect, else the reason it may not. */
  async #authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<string | null> {
    if (username === undefined || password === undefined) return 'anonymous';
    const server = this.#options.server;
    if (username === server.username) {
      const given = Buffer.from(password);
      const expected = Buffer.from(server.password);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad-credentials';
      (client as Client & { fleetpruneServer?: boolean }).fleetpruneServer = true;
      return null;
    }
    // A device's client id is its device id, so no device can take over another's session.
    if (client.id !== username) return 'client-id-mismatch';
    const device = await this.#options.credentials.getDevice(username);
    if (!device) return 'bad-credentials';
    if (!(await verifyPassword(password, device.passwordHash))) return 'bad-credentials';
    if (device.revoked || this.#revoked.has(username)) return 'revoked';
    return null;
  }
}

function subscribeInProcess(aedes: Aedes, filter: string, handler: MessageHandler, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    aedes.subscribe(
      filter,
      (packet, done) => {
        handler(packet.topic, Buffer.from(packet.payload)).then(done, (error: unknown) => {
          logger.error({ err: error, topic: packet.topic }, 'message handler failed');
          done();
        });
      },
      () => resolve(),
    );
  });
}
