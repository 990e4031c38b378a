import { ServiceError } from '../app/service-error.ts';
import type { QoS } from '../../shared/protocol/topics.ts';
import { createRequire } from 'node:module';
import { connect as tcpConnect } from 'node:net';
import type * as Mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import type { Logger } from '../../shared/util/log.ts';
import type { Broker, MessageHandler, PublishOptions } from './broker.ts';
import type { CredentialStore, ServerIdentity } from './credential-store.ts';
import { Mutex } from '../../shared/util/mutex.ts';
import { writeMosquittoAuthFiles } from './mosquitto-auth-files.ts';
import { MosquittoNotRunning } from './mosquitto-reload.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

/** How long after the last credentials change Mosquitto is told to reload once more. */
const TRAILING_RELOAD_MS = 1000;
/** How long a retained publish waits for the broker's acknowledgement before the caller goes on (see publish). */
export const RETAINED_ACK_WAIT_MS = 5_000;
/** How long the broker has to answer a connection with its CONNACK. */
const CONNECT_TIMEOUT_MS = 10_000;
/** The longest wait between two attempts to rewrite Mosquitto's files that keep failing. */
const MAX_REWRITE_RETRY_MS = 30_000;

export interface ExternalBrokerOptions {
  /** mqtt://host:port of the external broker (`fleetprune server --mqtt-url`). */
  url: string;
  server: ServerIdentity;
  credentials: CredentialStore;
  logger: Logger;
  /** Persistent-session client id of the server (default: the server username). */
  clientId?: string;
  /**
   * For Mosquitto: the directory its password_file and acl_file point into. The server
   * rewrites both on credentialsChanged() and then calls `reload` (e.g. SIGHUP to mosquitto).
   */
  mosquittoAuth?: { dir: string; reload: () => Promise<void> };
  /**
   * Called after each reconnect (not the first connect of start()): the broker may have restarted
   * and lost retained messages (no persistence, or a crash since its last autosave), so the
   * server publishes its retained assignments again. With it, a retained publish while the
   * broker is away resolves at once rather than waiting for the broker (the reconnect sends it).
   */
  onReconnect?: () => Promise<unknown>;
  /** With onReconnect: how long a retained publish waits for the broker's acknowledgement (default RETAINED_ACK_WAIT_MS). */
  retainedAckWaitMs?: number;
}

/**
 * The broker answered and refused the server's identity (CONNACK 2 identifier rejected, 4 bad user
 * name or password, 5 not authorized; their MQTT 5 codes): unlike a broker that is down, waiting
 * does not help unless someone changes its password or ACL files.
 */
export class BrokerRefusedConnection extends Error {}

/**
 * Mosquitto enforces out-of-date credentials: its password and ACL files could not be written, or
 * were written but the running Mosquitto could not be told to reload them (the message says which).
 */
export class MosquittoAuthFilesError extends UserError {}

const REFUSING_CONNACK_CODES = new Set([2, 4, 5, 133, 134, 135]);

/**
 * An external MQTT 3.1.1 broker. The server connects as its privileged identity with a
 * persistent session (clean session false), so QoS 1 reports published while it is away are
 * queued by the broker; a message is acknowledged only after its handler settles.
 */
export class ExternalBroker implements Broker {
  readonly #options: ExternalBrokerOptions;
  readonly #handlers: { filter: string; handler: MessageHandler; qos: QoS }[] = [];
  #client: MqttClient | undefined;
  readonly #authFiles = new Mutex();
  #trailingReload: NodeJS.Timeout | undefined;

  constructor(options: ExternalBrokerOptions) {
    this.#options = options;
  }

  get url(): string {
    return this.#options.url;
  }

  /** Whether the server's connection to the broker is up now. */
  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  async start(): Promise<void> {
    if (this.#client) return;
    if (this.#options.mosquittoAuth) {
      // Files written, but no Mosquitto to reload (and so none to connect to): say that, not a connect error.
      const notRunning = await this.#rewrite();
      if (notRunning !== null) throw new MosquittoNotRunning(notRunning);
    }
    const client = loadMqtt().connect(this.#options.url, {
      protocolVersion: 4,
      clean: false,
      clientId: this.#options.clientId ?? this.#options.server.username,
      username: this.#options.server.username,
      password: this.#options.server.password,
      reconnectPeriod: 1000,
      // A login refused once the server runs (an auth backend's hiccup, a password file being
      // edited, a broker restarted on an old one) must not end the reconnects: mqtt.js stops after
      // a refused CONNACK unless told otherwise, and nothing reached a device again (not even a
      // rollback) until the server restarted. The start's own refusal still fails the start (below).
      reconnectOnConnackError: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      resubscribe: true,
    });
    client.handleMessage = (packet, callback) => {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const matching = this.#handlers.filter(({ filter }) => topicMatches(filter, packet.topic));
      Promise.all(matching.map(({ handler }) => handler(packet.topic, payload, { retained: packet.retain }))).then(
        () => callback(),
        (error: unknown) => {
          this.#options.logger.error({ err: error, topic: packet.topic }, 'message handler failed');
          callback();
        },
      );
    };
    // It reconnects every second while the broker is away: the same error is logged once a minute, with how often it came.
    const errors = new RepeatedErrorLog(this.#options.logger, 'external broker connection error');
    client.on('error', (error) => errors.log(`${error.message}${this.#refusalHint(error)}`));
    let connects = 0;
    client.on('connect', (connack) => {
      errors.reset();
      if (++connects === 1 || !this.#options.onReconnect) return;
      this.#options.logger.warn({ sessionPresent: connack.sessionPresent }, 'reconnected to the external broker; publishing the retained assignments again (a restarted broker may have lost them)');
      this.#republishAfterReconnect(client, this.#options.onReconnect);
    });
    this.#client = client;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => {
        cleanup();
        // mqtt.js's packet parser on what another protocol answers (an HTTP server: "Invalid header flag bits …").
        const notMqtt = typeof (error as { code?: unknown }).code !== 'number' && /^Invalid |^Unknown |packet/i.test(error.message) ? ' (what answers there does not speak MQTT: is it the broker\'s port?)' : '';
        const identity = this.#refusalHint(error);
        const message = `cannot connect to the MQTT broker at ${this.#options.url}: ${error.message}${notMqtt}${identity}`;
        reject(identity !== '' ? new BrokerRefusedConnection(message) : new Error(message));
      };
      const onConnect = () => {
        cleanup();
        resolve();
      };
      // Closed with no error and no CONNACK (a database's port drops what it cannot read): mqtt.js
      // would reconnect to it silently for ever, and the start would wait with it.
      const onClose = () => {
        cleanup();
        reject(new Error(`cannot connect to the MQTT broker at ${this.#options.url}: it closed the connection without answering the MQTT CONNECT (is it an MQTT broker, and this its port?)`));
      };
      // stop() while still connecting (a broker that does not answer): give up rather than wait for ever.
      const onEnd = () => {
        cleanup();
        reject(new Error(`stopped before the MQTT broker at ${this.#options.url} answered`));
      };
      const cleanup = () => {
        client.off('connect', onConnect);
        client.off('error', onError);
        client.off('end', onEnd);
        client.off('close', onClose);
      };
      client.once('close', onClose);
      client.once('connect', onConnect);
      client.once('error', onError);
      client.once('end', onEnd);
    }).catch(async (error: unknown) => {
      this.#client = undefined;
      await client.endAsync(true);
      throw error;
    });
    for (const { filter, qos } of this.#handlers) await client.subscribeAsync(filter, { qos });
  }

  /** For a refused login: whose password the broker wants, and where it comes from ('' for any other error). */
  #refusalHint(error: Error): string {
    if (!REFUSING_CONNACK_CODES.has((error as { code?: unknown }).code as number)) return '';
    // Refused as the server identity: its password is FLEETPRUNE_MQTT_PASSWORD's (or --mosquitto-dir's file's).
    return this.#options.mosquittoAuth
      ? ` (the broker refused the server identity ${this.#options.server.username}: has Mosquitto read the password file the server wrote in ${this.#options.mosquittoAuth.dir}? it needs a reload)`
      : ` (the broker refused the server identity ${this.#options.server.username}: FLEETPRUNE_MQTT_PASSWORD must be its password in the broker's password file, or give --mosquitto-dir to have the server write that file)`;
  }

  #republishing = false;
  #republishAgain = false;

  /**
   * One republish at a time: a connection that keeps dropping runs it again once after the current
   * one (whose publishes while the broker was away were skipped), not once per reconnect.
   */
  #republishAfterReconnect(client: MqttClient, republish: () => Promise<unknown>): void {
    if (this.#republishing) {
      this.#republishAgain = true;
      return;
    }
    this.#republishing = true;
    void (async () => {
      do {
        this.#republishAgain = false;
        await republish().catch((error: unknown) => this.#options.logger.error({ err: errorMessage(error) }, 'publishing the retained assignments again after a reconnect failed'));
      } while (this.#republishAgain && this.#client === client && client.connected);
      this.#republishing = false;
    })();
  }

  /** Disconnects; waits up to 2 s for in-flight publishes, then closes the socket. */
  async stop(): Promise<void> {
    clearTimeout(this.#trailingReload);
    this.#trailingReload = undefined;
    clearTimeout(this.#retryRewrite);
    this.#retryRewrite = undefined;
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    const graceful = client.connected ? client.endAsync().then(() => true) : Promise.resolve(false);
    const ended = await Promise.race([graceful, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000).unref())]);
    if (!ended) await client.endAsync(true);
  }

  async subscribe(filter: string, handler: MessageHandler, qos: QoS = 1): Promise<void> {
    this.#handlers.push({ filter, handler, qos });
    if (this.#client?.connected) await this.#client.subscribeAsync(filter, { qos });
  }

  async publish(topic: string, payload: Buffer, options: PublishOptions): Promise<void> {
    const client = this.#client;
    if (!client) throw new Error('the external broker connection is not started');
    if (options.retain && !client.connected && this.#options.onReconnect) {
      // The broker is down or restarting: mqtt.js would hold a QoS 1 publish (and the API request
      // or the publisher's turn waiting on it) until the broker is back. A retained message is the
      // store's current one, which the reconnect publishes again anyway.
      this.#options.logger.warn({ topic }, 'the external broker is not connected; the retained message goes out when it is back');
      return;
    }
    if (!options.retain && options.qos > 0 && !client.connected && this.#options.onReconnect) {
      // A fleet command (not retained): mqtt.js would hold it, and every send queued behind it (an
      // operator's assignment included), until the broker is back. Refused at once: its sender
      // retries (a rollout's commands wait for the connection, and count no attempt meanwhile).
      throw new ServiceError('unavailable', 'the external broker is not connected, so the message was not sent; it is retried once the connection is back');
    }
    const published = client.publishAsync(topic, payload, { qos: options.qos, retain: options.retain });
    if (!options.retain || !this.#options.onReconnect || options.qos === 0) {
      await published;
      return;
    }
    // A broker that stops answering (hung, or a half-open connection) keeps the connection "up"
    // until the keepalive runs out, and mqtt.js holds a QoS 1 publish until it is acknowledged,
    // however long the broker takes: an assignment's API answer (and every send after it) waited
    // minutes. A retained message is the store's current one, and a reconnect publishes it again;
    // mqtt.js still sends this one if the broker answers on the same connection.
    let timer: NodeJS.Timeout | undefined;
    const acknowledged = await Promise.race([
      published.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.#options.retainedAckWaitMs ?? RETAINED_ACK_WAIT_MS))),
    ]).finally(() => clearTimeout(timer));
    if (!acknowledged) {
      published.catch((error: unknown) => this.#options.logger.warn({ topic, err: errorMessage(error) }, 'a retained message the external broker had not acknowledged failed; the reconnect publishes it again'));
      this.#options.logger.warn({ topic, waitedMs: this.#options.retainedAckWaitMs ?? RETAINED_ACK_WAIT_MS }, 'the external broker has not acknowledged a retained message; going on without it (it is sent when the broker answers, and again after a reconnect)');
    }
  }

  /**
   * One rewrite at a time, each reading the credentials afresh: concurrent enrollments would
   * otherwise race, and a rewrite that read the store earlier could land last and leave a newly
   * enrolled device out of Mosquitto's password file until the next change. Callers that arrive
   * while a rewrite waits its turn share it (it has not read the store yet, so it sees their
   * change): a burst of concurrent enrollments costs two rewrites, not one per device.
   *
   * Rejects when the files could not be written, or were written but a running Mosquitto could not
   * be told to reload them: either way Mosquitto enforces the old credentials (credentialsProblem()
   * says why, and the server retries in the background). Resolves when the files are written and
   * there is no Mosquitto to reload (see #rewrite): it reads them when it starts.
   */
  async credentialsChanged(): Promise<void> {
    await this.#rewrite();
  }

  /**
   * Writes the files and reloads Mosquitto. Resolves to null once Mosquitto reloaded them, or to
   * why it could not be reloaded when no Mosquitto runs (MosquittoNotRunning: no pid file, or no
   * process with its pid) while the server is not connected to one either: nothing then enforces
   * the old files, which a Mosquitto that starts reads. Connected to a broker, a missing pid file
   * means the pid file is not Mosquitto's (a wrong --mosquitto-pid-file): the running Mosquitto
   * keeps the old credentials, a failure like any other.
   */
  #rewrite(): Promise<string | null> {
    const auth = this.#options.mosquittoAuth;
    if (!auth) return Promise.resolve(null);
    this.#queuedRewrite ??= this.#authFiles.run(async () => {
      this.#queuedRewrite = undefined;
      try {
        await writeMosquittoAuthFiles(auth.dir, this.#options.server, this.#options.credentials).catch((error: unknown) => {
          // A directory the server cannot write (permissions, a mistyped path), not the broker's URL: say which.
          throw new MosquittoAuthFilesError(`cannot write Mosquitto's password and ACL files into ${auth.dir} (${errorMessage(error)})`, { cause: error });
        });
      } catch (error) {
        this.#rewriteFailed(error, 'Mosquitto\'s password and ACL files could not be written, so Mosquitto enforces the old ones (a revoked device can still connect); retrying until they can be written');
        throw error;
      }
      try {
        await auth.reload();
      } catch (error) {
        let reason = `files written; cannot reload Mosquitto: ${errorMessage(error)}`;
        if (error instanceof MosquittoNotRunning && !this.connected) {
          // No process at the pid file, and nothing answers at the broker's address either: no
          // Mosquitto runs. A broker that answers is one whose pid file is elsewhere (a wrong
          // --mosquitto-pid-file): it runs with the old files, which is stale.
          if (!(await answersTcp(this.#options.url))) {
            this.#mosquittoNotRunning(reason);
            return reason;
          }
          reason = `files written; cannot reload the Mosquitto that answers at ${this.#options.url}: ${errorMessage(error)}; is --mosquitto-pid-file its pid file?`;
        }
        const failure = new MosquittoAuthFilesError(reason, { cause: error });
        this.#rewriteFailed(failure, 'Mosquitto\'s password and ACL files are written, but the running Mosquitto could not be told to reload them, so it enforces the old ones (a revoked device can still connect); retrying');
        throw failure;
      }
      this.#reloadAgainLater(auth.reload);
      if (this.#authProblem !== null || this.#waitingForMosquitto !== null) {
        this.#options.logger.info({ failedAttempts: this.#failedRewrites }, 'Mosquitto\'s password and ACL files are up to date again and Mosquitto reloaded them');
      }
      this.#authProblem = null;
      this.#waitingForMosquitto = null;
      this.#failedRewrites = 0;
      this.#retryRounds = 0;
      return null;
    });
    return this.#queuedRewrite;
  }

  /** The files could not be written, or a running Mosquitto not reloaded: stale until a retry succeeds. */
  #rewriteFailed(error: unknown, logMessage: string): void {
    // The changes it was for are not in Mosquitto's files yet: try again shortly, not only at the next change.
    if (this.#authProblem === null) this.#options.logger.error({ err: errorMessage(error) }, logMessage);
    this.#authProblem = errorMessage(error);
    this.#failedRewrites++;
    this.#retryRewriteLater();
  }

  /**
   * The files are written and no Mosquitto runs to reload them (the first install starts the
   * server before Mosquitto; Mosquitto stopped): not stale, since no broker lets anyone in with the
   * old ones. Said once, at warn; start() leaves it to its caller, which retries the start. Once
   * started, the reload is retried quietly in the background (a Mosquitto that starts between the
   * rewrite and the look for its pid file may have read the files before), and success is logged.
   */
  #mosquittoNotRunning(reason: string): void {
    const first = this.#waitingForMosquitto === null;
    this.#authProblem = null;
    this.#waitingForMosquitto = reason;
    if (!this.#client) return;
    if (first) this.#options.logger.warn({ dir: this.#options.mosquittoAuth?.dir }, reason);
    this.#retryRewriteLater();
  }

  /**
   * Why Mosquitto enforces out-of-date credentials (the last rewrite failed, or a running Mosquitto
   * could not be reloaded; retried in the background), or null. Files written while no Mosquitto
   * runs are not out of date: it reads them when it starts.
   */
  credentialsProblem(): string | null {
    return this.#authProblem;
  }

  /** Why the files written could not be reloaded because no Mosquitto runs (not stale), or null. */
  #waitingForMosquitto: string | null = null;
  #authProblem: string | null = null;
  #failedRewrites = 0;
  /**
   * Background retries scheduled since the last success: the backoff grows with these only, so
   * that requests failing in between (each revocation and enrolment tries a rewrite too) do not
   * push the next background attempt out to the cap.
   */
  #retryRounds = 0;
  /** A rewrite waiting for its turn (not yet reading the store), which later callers join. */
  #queuedRewrite: Promise<string | null> | undefined;
  #retryRewrite: NodeJS.Timeout | undefined;

  /** 1 s after the first failure, then twice as long each time up to 30 s, until a rewrite succeeds. */
  #retryRewriteLater(): void {
    if (this.#retryRewrite) return;
    const delay = Math.min(MAX_REWRITE_RETRY_MS, TRAILING_RELOAD_MS * 2 ** this.#retryRounds);
    this.#retryRounds++;
    this.#retryRewrite = setTimeout(() => {
      this.#retryRewrite = undefined;
      this.credentialsChanged().catch((error: unknown) => this.#options.logger.warn({ err: errorMessage(error), attempts: this.#failedRewrites }, 'rewriting mosquitto\'s auth files failed again; retrying'));
    }, delay);
    this.#retryRewrite.unref();
  }

  /**
   * One more reload once the changes have stopped for a second. Mosquitto clears its reload flag
   * after the reload, not before, so a SIGHUP that lands while it re-reads the files (the next
   * enrollment of a burst) is lost, and the last device of the burst was refused until the next
   * change; the trailing reload reads the files after everything is written.
   */
  #reloadAgainLater(reload: () => Promise<void>): void {
    clearTimeout(this.#trailingReload);
    this.#trailingReload = setTimeout(() => {
      this.#trailingReload = undefined;
      void this.#authFiles.run(reload).catch((error: unknown) => this.#options.logger.warn({ err: errorMessage(error) }, 'reloading mosquitto again failed'));
    }, TRAILING_RELOAD_MS);
    this.#trailingReload.unref();
  }
}

/** MQTT topic filter matching (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

/**
 * mqtt.js, loaded when an external broker starts: a server on its embedded broker never needs it.
 * Required, not imported: an ES import of this CommonJS package first scans its sources for export
 * names (0.21 CPU-s against 0.09 s).
 */
function loadMqtt(): typeof Mqtt {
  return createRequire(import.meta.url)('mqtt') as typeof Mqtt;
}

/** Whether something accepts a TCP connection at the broker URL's host and port within `timeoutMs`. */
function answersTcp(url: string, timeoutMs = 2000): Promise<boolean> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.resolve(false);
  }
  const port = Number(target.port) || (target.protocol === 'mqtts:' ? 8883 : 1883);
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: target.hostname.replace(/^\[|\]$/g, ''), port });
    const done = (answers: boolean) => {
      socket.destroy();
      resolve(answers);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** How often one repeated connection error is logged again. */
const REPEATED_ERROR_LOG_MS = 60_000;

/**
 * Logs an error the first time it comes, then, while it keeps coming, once every
 * REPEATED_ERROR_LOG_MS with how many times it came meanwhile: a broker away for an hour made
 * 3,600 identical lines. Another error is logged at once; reset() (connected) starts over.
 */
class RepeatedErrorLog {
  #last: string | undefined;
  #loggedAt = 0;
  #repeats = 0;

  constructor(
    private readonly logger: Logger,
    private readonly message: string,
  ) {}

  log(error: string): void {
    const at = Date.now();
    if (error === this.#last && at - this.#loggedAt < REPEATED_ERROR_LOG_MS) {
      this.#repeats++;
      return;
    }
    this.logger.warn({ err: error, ...(error === this.#last && this.#repeats > 0 ? { repeatedSinceLastLog: this.#repeats } : {}) }, this.message);
    this.#last = error;
    this.#loggedAt = at;
    this.#repeats = 0;
  }

  reset(): void {
    this.#last = undefined;
    this.#repeats = 0;
  }
}
