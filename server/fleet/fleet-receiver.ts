import type { Counter } from 'prom-client';
import { parseMessage } from '../../shared/protocol/parse-message.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { ALL_DEVICES_FILTER, parseTopic } from '../../shared/protocol/topics.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { Broker, DeliveryInfo } from '../broker/broker.ts';
import { stateDrop, type FleetIngest } from './fleet-ingest.ts';
import type { ReportRateLimit } from './report-rate-limit.ts';
import { DroppedMessageLog } from '../../shared/util/dropped-message-log.ts';
import { isConnectionFailure, StoreUnavailableError } from '../store/store-unavailable.ts';

export interface FleetReceiverOptions {
  broker: Broker;
  ingest: FleetIngest;
  logger: Logger;
  /** Dropped messages, labelled by topic kind and drop reason. */
  dropped: Counter<'kind' | 'reason'>;
  /** Accepted messages, labelled by topic kind. */
  accepted?: Counter<'kind'>;
  duplicates?: Counter;
  /**
   * Pauses before each new attempt when storing a message fails (a busy or restarting database).
   * The device has its broker's acknowledgement already and will not send the message again.
   */
  storeRetryDelaysMs?: readonly number[];
  /** Each device's benchmark reports beyond this limit are dropped before they reach the ingest (it counts and logs them). */
  reportLimit?: ReportRateLimit;
  /** Each device's answers (assignment reports) beyond this limit, a bucket of their own, likewise. */
  answerLimit?: ReportRateLimit;
  /** Dropped messages are logged at most once per device per this many ms (default a minute; every one is counted). */
  droppedLogEveryMs?: number;
  /**
   * A status from a device that is not enrolled or is revoked was dropped: statuses are retained,
   * so the broker would hand it over again at each subscription; the server clears it (fleet-module).
   */
  onUnknownDeviceStatus?: (deviceId: string) => void;
  /**
   * A message the broker handed over retained on a reports or telemetry topic, where nothing is
   * retained (TOPIC_DELIVERY): whatever it holds, it would come back at each subscription, for
   * good (a revoked device's too); the server clears it (fleet-module).
   */
  onRetainedDeviceMessage?: (topic: string) => void;
}

const STORE_RETRY_DELAYS_MS = [200, 500, 1000, 2000, 5000];

/**
 * The server's reader of device messages: subscribes to every device's reports, telemetry and
 * status, validates each with the shared schemas and hands it to the ingest. A malformed,
 * oversized or spoofed message is dropped with a logged and counted reason, and so is a report
 * beyond its device's rate limit (`reportLimit`, `answerLimit`), a heartbeat or report the broker
 * replays from its retained store, a message from a device that is not enrolled or is revoked, and
 * a benchmark report about a model version the registry does not hold;
 * nothing a device sends can throw out of here.
 */
export class FleetReceiver {
  readonly #options: FleetReceiverOptions;

  readonly #droppedLog: DroppedMessageLog;
  /** Messages dropped because the store failed: one log for all devices (an outage drops every device's). */
  readonly #storeFailureLog: DroppedMessageLog;
  /** How many since the store last took one (said when it takes one again). */
  #storeDrops = 0;
  /** For each error a message failed by (a bug), when it was last logged and how many have failed by it since without a line. */
  readonly #bugWindows = new Map<string, { at: number; unlogged: number }>();
  /** Topics whose retained message the server asked to clear, until the clear comes back (one each: a topic's retained message is one). */
  readonly #clearing = new Set<string>();

  constructor(options: FleetReceiverOptions) {
    this.#options = options;
    this.#droppedLog = new DroppedMessageLog(options.logger, options.droppedLogEveryMs === undefined ? {} : { everyMs: options.droppedLogEveryMs });
    this.#storeFailureLog = new DroppedMessageLog(options.logger, { ...(options.droppedLogEveryMs === undefined ? {} : { everyMs: options.droppedLogEveryMs }), words: { same: 'that could not be stored', per: 'for all devices' } });
  }

  async start(): Promise<void> {
    for (const kind of ['reports', 'telemetry', 'status'] as const) {
      // Heartbeats carry cumulative counters, so a missed one loses nothing: at QoS 0 an external
      // broker does not queue them while the server is away, where they would fill its queue
      // (Mosquitto's max_queued_messages) and the reports behind them would be dropped.
      await this.#options.broker.subscribe(ALL_DEVICES_FILTER(kind), (topic, payload, delivery) => this.handle(topic, payload, delivery), kind === 'telemetry' ? 0 : 1);
    }
  }

  /** Validates and ingests one message; resolves once it is stored (or dropped). */
  async handle(topic: string, payload: Buffer, delivery?: DeliveryInfo): Promise<void> {
    const { logger, dropped } = this.#options;
    // An empty message on a status topic clears its retained status (the server does so for a
    // revoked device): nothing a device said, so neither taken nor dropped.
    const kind = parseTopic(topic)?.kind;
    if (payload.length === 0 && kind === 'status') {
      logger.debug({ topic }, 'a retained status was cleared');
      return;
    }
    // The server's own clear of a retained report or heartbeat (below), as the broker passes it on:
    // not a device's message. Any other empty one is, and is dropped as malformed, counted.
    if (payload.length === 0 && this.#clearing.delete(topic)) return;
    if (delivery?.retained && payload.length > 0 && (kind === 'reports' || kind === 'telemetry') && this.#options.onRetainedDeviceMessage) {
      this.#clearing.add(topic);
      this.#options.onRetainedDeviceMessage(topic);
    }
    const result = parseMessage(topic, payload);
    if (!result.ok) {
      const kind = topic.split('/')[4] ?? 'unknown';
      dropped.inc({ kind: ['reports', 'telemetry', 'status'].includes(kind) ? kind : 'unknown', reason: result.reason });
      // The broker's ACL lets a device publish only under its own id: the topic names the sender.
      this.#droppedLog.dropped(topic.split('/')[3] ?? '?', { topic: topic.slice(0, 200), bytes: payload.length, reason: result.reason, detail: result.detail.slice(0, 500) }, 'dropped a device message');
      return;
    }
    const { message } = result;
    // Heartbeats are not retained (TOPIC_DELIVERY). One a device published retained anyway comes
    // back from an external broker each time the server subscribes again: an old heartbeat read
    // after newer ones looks like an agent restart, and its served counters would count twice.
    // Reports are not retained either: one published retained anyway reached the server live when it
    // was published (the server's session is persistent), and what the broker hands over at each
    // new subscription is that same report again, not something the device sent once more.
    if ((message.kind === 'telemetry' || message.kind === 'reports') && delivery?.retained) {
      dropped.inc({ kind: message.kind, reason: 'retained' });
      this.#droppedLog.dropped(message.deviceId, { topic, deviceId: message.deviceId }, `dropped a retained ${message.kind === 'telemetry' ? 'heartbeat' : 'report'} replayed by the broker (${message.kind === 'telemetry' ? 'heartbeats' : 'reports'} must not be published retained)`);
      return;
    }
    // Benchmark reports and answers each have their own bucket: a device flooding one kind does not
    // hold back the other (an answer is what a rollout, a rollback or a waiting operator needs to
    // hear). Before any store access, and once per message (a retried store write takes no second token).
    if (message.kind === 'reports') {
      const limit = message.payload.kind === 'benchmark' ? this.#options.reportLimit : this.#options.answerLimit;
      if (limit && !limit.admit(message.deviceId)) return;
    }
    const delays = this.#options.storeRetryDelaysMs ?? STORE_RETRY_DELAYS_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#ingest(message);
        if (this.#storeDrops > 0) {
          logger.info({ dropped: this.#storeDrops, reason: 'storage-error' }, `the store takes device messages again; ${this.#storeDrops} were dropped while it did not`);
          this.#storeDrops = 0;
        }
        return;
      } catch (error) {
        // A bug is not healed by waiting: no retries for it, the store's failures only.
        const delay = isStoreFailure(error) ? delays[attempt] : undefined;
        if (delay === undefined) {
          // The broker gets no error back (it would only log it again): the device already has its
          // acknowledgement, so nothing would send the message again.
          dropped.inc({ kind: message.kind, reason: 'storage-error' });
          const fields = { topic, deviceId: message.deviceId, attempts: attempt + 1, reason: 'storage-error' };
          if (isStoreFailure(error)) {
            // The store's failure, not the message's: one line with the error (the store's errors say
            // what failed), and during an outage one a minute for every device's drops, not a line
            // per message; how many in all is said once the store takes messages again.
            this.#storeDrops++;
            this.#storeFailureLog.dropped('store', { ...fields, err: errorMessage(error) }, 'dropped a device message the server could not store');
          } else {
            // Anything else is a bug on the server's side: loud, with its stack, once a minute for each
            // error (one every message meets would otherwise write a stack per message; another bug in
            // the same minute still gets its own line), with how many there were since.
            const key = errorMessage(error).slice(0, 200);
            const now = Date.now();
            const window = this.#bugWindows.get(key);
            if (!window || now - window.at >= (this.#options.droppedLogEveryMs ?? 60_000)) {
              logger.error({ ...fields, err: error, ...(window && window.unlogged > 0 ? { droppedSinceLastLine: window.unlogged } : {}) }, 'cannot ingest a device message');
              this.#bugWindows.delete(key);
              this.#bugWindows.set(key, { at: now, unlogged: 0 });
              // The oldest errors' windows go first: a flood of distinct messages keeps the map small.
              for (const oldest of this.#bugWindows.keys()) {
                if (this.#bugWindows.size <= MAX_BUG_WINDOWS) break;
                this.#bugWindows.delete(oldest);
              }
            } else {
              window.unlogged++;
            }
          }
          return;
        }
        logger.debug({ err: errorMessage(error), topic, deviceId: message.deviceId, retryInMs: delay }, 'storing a device message failed; trying again');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async #ingest(message: Extract<ReturnType<typeof parseMessage>, { ok: true }>['message']): Promise<void> {
    const { logger, dropped, accepted, duplicates, ingest } = this.#options;
    switch (message.kind) {
      case 'reports': {
        const outcome = await ingest.ingestReport(message.payload);
        if (outcome === 'duplicate') {
          duplicates?.inc();
          logger.debug({ reportId: message.payload.id, deviceId: message.deviceId }, 'duplicate report ignored');
        } else if (outcome === 'wrong-outcome') {
          // An answer its assignment or command cannot have (a buggy or forged report): it must not move the device's slots.
          dropped.inc({ kind: 'reports', reason: outcome });
          const answer = message.payload as AssignmentReport;
          this.#droppedLog.dropped(
            message.deviceId,
            { reportId: answer.id, deviceId: message.deviceId, assignmentId: answer.assignmentId, outcome: answer.outcome, role: answer.role, reason: outcome },
            `dropped an answer (${answer.outcome}, role ${answer.role}) that the assignment or command it answers cannot have`,
          );
          return;
        } else if (outcome === 'unknown-assignment') {
          // A well-formed answer to nothing the server issued: it must not move the device's slots.
          dropped.inc({ kind: 'reports', reason: outcome });
          this.#droppedLog.dropped(message.deviceId, { reportId: message.payload.id, deviceId: message.deviceId, assignmentId: message.payload.assignmentId, reason: outcome }, message.payload.kind === 'benchmark' ? 'dropped a benchmark report naming an assignment the server did not issue to the device' : 'dropped a report answering no assignment or command the server issued');
          return;
        } else if (typeof outcome === 'object') {
          // About a model the device was not assigned, or the registry does not hold (a buggy or
          // forged report): no history row, no slots, no series.
          const { ref } = outcome;
          const fields = { reportId: message.payload.id, deviceId: message.deviceId, model: ref.model, version: ref.version, sha256: ref.sha256, reason: outcome.outcome };
          dropped.inc({ kind: 'reports', reason: outcome.outcome });
          const what = message.payload.kind === 'benchmark' ? 'a benchmark report' : `an answer (${message.payload.outcome})`;
          if (outcome.outcome === 'unknown-model') {
            this.#droppedLog.dropped(message.deviceId, { ...fields, role: outcome.role }, `dropped ${what} whose ${outcome.role} ${ref.model}@${ref.version} is not a registered version with that sha256`);
          } else {
            const { assigned } = outcome;
            this.#droppedLog.dropped(message.deviceId, { ...fields, assignmentId: message.payload.assignmentId, assigned: `${assigned.model}@${assigned.version}` }, `dropped ${what} naming ${ref.model}@${ref.version} where its assignment names ${assigned.model}@${assigned.version}`);
          }
          return;
        } else if (outcome === 'unknown-device') {
          // A report still in flight when its device was revoked: it must not bring back the device's series.
          dropped.inc({ kind: 'reports', reason: outcome });
          this.#droppedLog.dropped(message.deviceId, { reportId: message.payload.id, deviceId: message.deviceId, reason: outcome }, 'dropped a report from a device that is not enrolled or is revoked');
          return;
        }
        break;
      }
      case 'telemetry':
      case 'status': {
        const outcome = message.kind === 'telemetry' ? await ingest.recordTelemetry(message.payload) : await ingest.recordStatus(message.payload);
        // One still in flight when its device was revoked, its retained status handed over again, or a heartbeat delivered late.
        const drop = stateDrop(outcome);
        if (drop) {
          dropped.inc({ kind: message.kind, reason: drop.reason });
          logger.warn({ kind: message.kind, deviceId: message.deviceId, reason: drop.reason }, drop.message);
          // Its retained status would come back at every subscription (each leader start): cleared, once.
          if (message.kind === 'status' && outcome === 'unknown-device') this.#options.onUnknownDeviceStatus?.(message.deviceId);
          return;
        }
        // Held by a throttle: it counts the message when it is written.
        if (outcome === 'held') return;
        break;
      }
      default:
        dropped.inc({ kind: message.kind, reason: 'unknown-topic' });
        return;
    }
    accepted?.inc({ kind: message.kind });
  }
}

/** At most this many distinct errors' log windows are kept. */
const MAX_BUG_WINDOWS = 100;

/** SQLite's codes for a database busy, locked, out of room, damaged or failing its I/O: the store's trouble, not a bug. */
const SQLITE_TROUBLE = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|NOMEM|PROTOCOL|CORRUPT|NOTADB|PERM|AUTH)/;
/**
 * PostgreSQL's SQLSTATEs of a database in trouble rather than a statement at fault: insufficient
 * resources (53), operator intervention (57), system error (58), configuration (F0), internal (XX),
 * a read-only transaction (25006: a replica after a failover), lock timeouts, deadlocks and
 * serialization (55P03, 40P01, 40001), missing rights or login (42501, 28), a missing database or
 * table (3D000, 42P01: a restore gone wrong).
 */
const PG_TROUBLE = /^(53|57|58|F0|XX|28)|^(25006|55P03|40P01|40001|42501|3D000|42P01)$/;

/** Whether an ingest failed because the store did (unreachable, busy, full, read-only, damaged), rather than by a bug of the server's. */
export function isStoreFailure(error: unknown): boolean {
  if (error instanceof StoreUnavailableError || isConnectionFailure(error)) return true;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  // SQLite says a table is missing (a restore gone wrong) only in words, under its generic code.
  if (code === 'SQLITE_ERROR' && /^no such table/.test((error as Error).message)) return true;
  return SQLITE_TROUBLE.test(code) || PG_TROUBLE.test(code);
}
