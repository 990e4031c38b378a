import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { parseMessage, type DropReason, type FleetMessage } from '../shared/protocol/parse-message.ts';
import { StatusSchema } from '../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC, TOPIC_DELIVERY, assignmentTopic, statusTopic } from '../shared/protocol/topics.ts';
import { AGENT_DROP_WORDS, DroppedMessageLog } from '../shared/util/dropped-message-log.ts';
import type { Logger } from '../shared/util/log.ts';

/** Opens an MQTT connection; injected so tests and benchmarks can wrap or count connections. */
export type MqttConnector = (url: string, options: IClientOptions) => MqttClient;
export const connectMqtt: MqttConnector = (url, options) => mqtt.connect(url, options);

export interface MqttLinkOptions {
  deviceId: string;
  broker: { url: string; username: string; password: string };
  connector: MqttConnector;
  logger: Logger;
  clock: () => Date;
  onMessage: (message: FleetMessage) => void;
  onDrop: (topicKind: string, reason: DropReason) => void;
  onConnected: () => void;
  onConnectionChange?: (connected: boolean) => void;
  /** The first reconnect's delay (default 1 s); later ones back off to MAX_RECONNECT_MS. */
  reconnectPeriodMs?: number;
  /** Jitter source (default Math.random). */
  random?: () => number;
  /** How often the assignment topic is subscribed to again, so the broker re-sends its retained message (default 10 min). */
  assignmentResyncMs?: number;
}

/**
 * A broker can withhold a retained assignment for good: Mosquitto skips one its ACL does not allow
 * at subscribe time and never sends it again once the ACL allows it. Subscribing again makes the
 * broker re-send it (MQTT 3.1.1 §3.8.4); the agent handles an assignment id once, so a copy of
 * one it has handled changes nothing. 10k devices at this period are ~17 small messages a second.
 */
export const ASSIGNMENT_RESYNC_MS = 10 * 60_000;

/**
 * Reconnects back off from reconnectPeriodMs, doubling after each connection that failed or
 * closed, to at most this, with ±20% jitter: a broker that is down, or refuses a revoked device,
 * is not asked (and the log not written) every second for hours, and a restarted broker is not
 * hit by the whole fleet in the same second. A connection that lasted SHORT_SESSION_MS starts again
 * from the period; one closed sooner (another client taking the id) counts as a failure.
 */
export const MAX_RECONNECT_MS = 30_000;

/**
 * Connections in a row that the broker closed this soon after they were made, before the agent
 * warns that another client may hold its client id: a broker closes the older of two connections
 * with one id, so two devices given the same config (a cloned SD card) take the connection from
 * each other every second, for ever, and each one's heartbeats overwrite the other's.
 */
export const SHORT_SESSION_MS = 10_000;
export const SHORT_SESSIONS_BEFORE_WARNING = 3;
const SESSION_WARNING_EVERY_MS = 10 * 60_000;
/**
 * Refused credentials are logged at once, then at most this often while the refusals go on: a
 * revoked device retries every 30 s for as long as it runs, and said so at error level each time
 * (2,880 lines a day).
 */
export const REFUSAL_LOG_EVERY_MS = 10 * 60_000;

/**
 * The agent's MQTT 3.1.1 session: client id = device id, clean session false (the broker keeps
 * QoS 1 messages for it while it is away), a retained `online` status on every connect and a
 * retained `offline` last will. It (re)subscribes to its assignment topic and the fleet commands
 * on every connect, which also brings the retained assignment back, and to the assignment topic
 * again every ASSIGNMENT_RESYNC_MS. Incoming messages are validated; bad ones are dropped and
 * counted.
 */
export class MqttLink {
  readonly #options: MqttLinkOptions;
  #client: MqttClient | undefined;
  readonly #subscribeRetries = new Set<NodeJS.Timeout>();
  #subscribeRetryMs = 0;
  #resync: NodeJS.Timeout | undefined;

  readonly #random: () => number;

  constructor(options: MqttLinkOptions) {
    this.#options = options;
    this.#random = options.random ?? Math.random;
  }

  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  start(): void {
    const { deviceId, broker, connector, logger } = this.#options;
    const status = (online: boolean) => Buffer.from(JSON.stringify(StatusSchema.parse({ schema: 1, deviceId, online, since: this.#options.clock().toISOString() })));
    const client = connector(broker.url, {
      protocolVersion: 4,
      clean: false,
      clientId: deviceId,
      username: broker.username,
      password: broker.password,
      keepalive: 30,
      reconnectPeriod: this.#options.reconnectPeriodMs ?? 1000,
      // A refused CONNACK (e.g. Mosquitto not yet reloaded after enrollment) must not stop
      // reconnecting: mqtt.js suppresses reconnects after one unless told otherwise.
      reconnectOnConnackError: true,
      connectTimeout: 10_000,
      resubscribe: false,
      will: { topic: statusTopic(deviceId), payload: status(false), qos: TOPIC_DELIVERY.status.qos, retain: TOPIC_DELIVERY.status.retain },
    });
    const basePeriod = this.#options.reconnectPeriodMs ?? 1000;
    let failures = 0;
    let connectedAt: number | undefined;
    let shortSessions = 0;
    let warnedAt = -Infinity;
    let refusals = 0;
    let refusalLoggedAt = -Infinity;
    // Prepended: mqtt.js schedules the reconnect from its own 'close' listener, with the period set here.
    client.prependListener('close', () => {
      if (connectedAt !== undefined) {
        const lasted = performance.now() - connectedAt;
        connectedAt = undefined;
        shortSessions = lasted < SHORT_SESSION_MS ? shortSessions + 1 : 0;
        // A connection that lasted starts the backoff again; one the broker closed at once (another
        // client holding the id) goes on backing off, or two clones reconnect every second for ever.
        if (shortSessions === 0) failures = 0;
        if (shortSessions >= SHORT_SESSIONS_BEFORE_WARNING && performance.now() - warnedAt >= SESSION_WARNING_EVERY_MS) {
          warnedAt = performance.now();
          logger.warn(
            { broker: broker.url, clientId: deviceId, shortSessions },
            `the broker closed this device's connection ${shortSessions} times in a row within ${SHORT_SESSION_MS / 1000} s of connecting: another client may be connected as ${deviceId} ` +
              '(the same config on two devices, or a second agent): the broker lets one connection hold a client id, and the two take it from each other; ' +
              'else the broker itself drops it (its log says why, e.g. "Expiring client … due to timeout")',
          );
        }
      }
      failures += 1;
      const period = Math.min(basePeriod * 2 ** Math.min(failures - 1, 20), Math.max(basePeriod, MAX_RECONNECT_MS));
      client.options.reconnectPeriod = Math.round(period * (0.8 + 0.4 * this.#random()));
    });
    client.on('connect', () => {
      refusals = 0;
      connectedAt = performance.now();
      logger.info({ broker: broker.url }, 'connected to the broker');
      this.#options.onConnectionChange?.(true);
      client.publish(statusTopic(deviceId), status(true), { qos: TOPIC_DELIVERY.status.qos, retain: true }, () => {});
      this.#subscribeRetryMs = 0;
      this.#subscribe(client, [assignmentTopic(deviceId), FLEET_COMMANDS_TOPIC]);
      clearInterval(this.#resync);
      this.#resync = setInterval(() => {
        if (this.#client === client && client.connected) this.#subscribe(client, [assignmentTopic(deviceId)]);
      }, this.#options.assignmentResyncMs ?? ASSIGNMENT_RESYNC_MS).unref();
      this.#options.onConnected();
    });
    client.on('close', () => {
      this.#cancelSubscribeRetries();
      clearInterval(this.#resync);
      this.#options.onConnectionChange?.(false);
    });
    client.on('error', (error) => {
      // CONNACK 4/5 (MQTT 3.1.1), 134/135 (MQTT 5): the credentials were refused. Retried all the
      // same (a broker may not have reloaded its password file yet), but said loudly.
      const code = (error as { code?: unknown }).code;
      if (code === 4 || code === 5 || code === 134 || code === 135) {
        refusals += 1;
        if (refusals > 1 && performance.now() - refusalLoggedAt < REFUSAL_LOG_EVERY_MS) return;
        refusalLoggedAt = performance.now();
        const again = refusals > 1 ? ` (refused ${refusals} times in a row; said again every ${REFUSAL_LOG_EVERY_MS / 60_000} min while it lasts)` : '';
        logger.error({ err: error.message, broker: broker.url, refusals }, `the broker refused this device's credentials (revoked, or enrolled again elsewhere?); retrying${again}`);
      } else logger.warn({ err: error.message }, 'broker connection error');
    });
    const drops = new DroppedMessageLog(logger, { words: AGENT_DROP_WORDS });
    client.on('message', (topic, payload) => {
      const result = parseMessage(topic, payload);
      if (!result.ok) {
        const kind = topic === FLEET_COMMANDS_TOPIC ? 'commands' : (topic.split('/')[4] ?? 'unknown');
        this.#options.onDrop(kind, result.reason);
        // A flood of bad messages (a misbehaving peer on the broker) must not fill a device's small disk: a line a minute per kind and reason, every drop counted.
        drops.dropped(`${kind}:${result.reason}`, { topic: topic.slice(0, 200), bytes: payload.length, reason: result.reason, detail: result.detail.slice(0, 300) }, 'dropped an incoming message');
        return;
      }
      if (result.message.kind !== 'assignment' && result.message.kind !== 'commands') {
        this.#options.onDrop(result.message.kind, 'unknown-topic');
        return;
      }
      if (result.message.kind === 'assignment' && result.message.deviceId !== deviceId) {
        this.#options.onDrop('assignment', 'device-mismatch');
        return;
      }
      this.#options.onMessage(result.message);
    });
    this.#client = client;
  }

  /**
   * Subscribes to `topics`; what the broker refuses is asked for again, with a backoff, for as long
   * as this connection lasts (a reconnect subscribes afresh). A broker answers SUBACK 0x80 for a
   * topic its ACL does not allow (the embedded broker, auth plugins, other brokers), sometimes only
   * for a moment (an ACL not reloaded yet); without a retry the device would stay connected and
   * never hear of an assignment. (Mosquitto's acl_file grants the subscription and withholds the
   * messages instead: see ASSIGNMENT_RESYNC_MS.)
   */
  #subscribe(client: MqttClient, topics: string[]): void {
    const qos: Record<string, { qos: 0 | 1 | 2 }> = {
      [assignmentTopic(this.#options.deviceId)]: { qos: TOPIC_DELIVERY.assignment.qos },
      [FLEET_COMMANDS_TOPIC]: { qos: TOPIC_DELIVERY.commands.qos },
    };
    client.subscribe(Object.fromEntries(topics.map((topic) => [topic, qos[topic]!])), (error, _granted, suback) => {
      if (this.#client !== client || !client.connected || !error) return;
      // mqtt.js fails the whole call when any return code has the 0x80 bit; the SUBACK's codes, in
      // the order of `topics`, say which were refused (all of them when there is no SUBACK).
      const codes = suback?.granted;
      const refused = Array.isArray(codes) && codes.length === topics.length ? topics.filter((_, i) => (Number(codes[i]) & 0x80) !== 0) : topics;
      if (refused.length === 0) return;
      this.#subscribeRetryMs = Math.min(Math.max(this.#options.reconnectPeriodMs ?? 1000, this.#subscribeRetryMs * 2), MAX_SUBSCRIBE_RETRY_MS);
      this.#options.logger.warn({ err: error.message, topics: refused, retryInMs: this.#subscribeRetryMs }, 'the broker refused a subscription; asking again');
      const retry = setTimeout(() => {
        this.#subscribeRetries.delete(retry);
        if (this.#client === client && client.connected) this.#subscribe(client, refused);
      }, this.#subscribeRetryMs);
      this.#subscribeRetries.add(retry);
    });
  }

  #cancelSubscribeRetries(): void {
    for (const retry of this.#subscribeRetries) clearTimeout(retry);
    this.#subscribeRetries.clear();
  }

  /** QoS 1 publish that resolves on PUBACK; rejects at once when not connected. */
  async publish(topic: string, payload: Buffer, retain = false): Promise<void> {
    const client = this.#client;
    if (!client?.connected) throw new Error('not connected to the broker');
    await client.publishAsync(topic, payload, { qos: 1, retain });
  }

  /** Marks the device offline (retained) and disconnects cleanly. */
  async stop(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#cancelSubscribeRetries();
    clearInterval(this.#resync);
    if (!client) return;
    if (client.connected) {
      const offline = Buffer.from(JSON.stringify({ schema: 1, deviceId: this.#options.deviceId, online: false, since: this.#options.clock().toISOString() }));
      await Promise.race([client.publishAsync(statusTopic(this.#options.deviceId), offline, { qos: 1, retain: true }).catch(() => {}), delay(2000)]);
    }
    await client.endAsync(true);
  }
}

/** The longest wait before a refused subscription is asked for again. */
const MAX_SUBSCRIBE_RETRY_MS = 30_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
