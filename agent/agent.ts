import type { KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Express } from 'express';
import { ONNX_FILE } from '../shared/artifact/manifest.ts';
import { serverPublicKeyOf, type AgentConfig } from '../shared/protocol/agent-config.ts';
import type { FleetMessage } from '../shared/protocol/parse-message.ts';
import {
  selectorMatches,
  type Assignment,
  type AssignmentReport,
  type FleetCommand,
  type ModelRef,
  type Report,
  type Role,
  type Telemetry,
} from '../shared/protocol/payloads.ts';
import { reportsTopic, telemetryTopic } from '../shared/protocol/topics.ts';
import { describeSystemError, errorMessage, isSystemError, UserError } from '../shared/util/errors.ts';
import { keyId } from '../shared/artifact/signing-keys.ts';
import type { Logger } from '../shared/util/log.ts';
import { createAgentMetrics, type AgentMetrics } from './agent-metrics.ts';
import { assignmentReport } from './assignment-reports.ts';
import { AssignmentRetries } from './assignment-retries.ts';
import { ArtifactFetcher, DEFAULT_DOWNLOAD_LIMITS, type DownloadLimits, type FreeSpace } from './artifact-fetcher.ts';
import { crashPoint } from './crash-points.ts';
import { DataDir } from './data-dir.ts';
import { DirectReports } from './direct-reports.ts';
import { describeFileError } from './file-errors.ts';
import { manifestIdentityProblem } from './manifest-identity.ts';
import { HEARTBEAT_INTERVAL_MS, HeartbeatBuilder } from './heartbeat.ts';
import { MessageTrust } from './message-trust.ts';
import { benchmarkCandidate } from './candidate-benchmark.ts';
import { DEFAULT_BENCHMARK_SETTINGS, ModelBenchmarkError, type BenchmarkSettings } from './model-benchmark.ts';
import { DownloadDeferred, ModelObtainer, StoppingError } from './model-obtainer.ts';
import { ModelStore, type InstalledModel } from './model-store.ts';
import { MqttLink, type MqttConnector } from './mqtt-link.ts';
import { Outbox } from './outbox.ts';
import { createPredictApp } from './predict-api.ts';
import { reportId } from './report-ids.ts';
import type { ServingModel } from './serving-model.ts';
import { ServingSlots } from './serving-slots.ts';
import type { SessionCache } from './session-cache.ts';
import { alignHoldout, type Holdout } from './holdout.ts';
import { restoreMark, restores, withLost, withLossReportedTo } from './lost-models.ts';
import { CorruptStateError, SlotStateFile, candidateStaysBeside, mootActivationCause, sameModel, withAssignmentHandled, withHandled, withInstaller, withRefusalRecorded, type LostModel, type SlotState } from './slot-state.ts';

/** A partial download untouched this long was given up; it is removed at start and by a periodic sweep. */
const STALE_DOWNLOAD_MS = 7 * 24 * 3_600_000;
const STALE_DOWNLOAD_SWEEP_MS = 6 * 3_600_000;

/** What an agent is given from outside; the CLI passes the real ones, a benchmark may share them. */
export interface AgentDependencies {
  connector: MqttConnector;
  sessions: SessionCache;
  clock: () => Date;
  logger: Logger;
  /** Free bytes on the file system of a directory (default: statfs), checked before a download. */
  freeSpace?: FreeSpace;
}

export interface AgentOptions {
  config: AgentConfig;
  dataDir: string;
  /** The device's labelled holdout; without it candidates are installed but not benchmarked. */
  holdout?: Holdout;
  benchmark?: BenchmarkSettings;
  heartbeatIntervalMs?: number;
  /** Fraction of /v1/predict requests shadow-run on the candidate (0 = off). */
  shadowFraction?: number;
  /** Download attempts for a transient failure (network, 5xx) before the assignment is refused. */
  downloadAttempts?: number;
  retryBaseDelayMs?: number;
  /** Idle timeout and minimum rate of artifact requests (defaults: DEFAULT_DOWNLOAD_LIMITS). */
  downloadLimits?: Partial<DownloadLimits>;
  mqttReconnectMs?: number;
  /** How often the agent resubscribes to its assignment topic, which re-delivers the retained assignment (default 10 min). */
  assignmentResyncMs?: number;
  /** How often partial downloads are checked for staleness while running (default 6 h). */
  staleDownloadSweepMs?: number;
  /** The first wait before an assignment that failed on the device (a full disk) is taken again (default 30 s; it doubles up to 10 min). */
  assignmentRetryMs?: number;
  /** How long stop() waits for the work in progress before it lets the sessions go (default 5 s). */
  stopGraceMs?: number;
}

/** Why a benchmark was cut short: other work arrived (see #interruptBenchmark). */
class BenchmarkInterrupted extends Error {
  constructor(readonly by: string) {
    super(`benchmark interrupted by ${by}`);
  }
}

/**
 * An activation whose candidate's benchmark was cut short by other work (a fleet command, a newer
 * assignment): not answered yet, it is queued again behind that work, and given up if that work
 * made it moot (#mootActivation).
 */
class ActivationDeferred extends Error {
  constructor() {
    super('activation deferred: its candidate\'s benchmark was interrupted');
  }
}

/** How a run of #benchmarkCandidate ended. */
type BenchmarkRun = 'reported' | 'interrupted' | 'stopped' | 'not-saved' | 'not-run';

/** Whether two slots hold the same model, or are both empty. */
function sameSlot(a: ModelRef | null, b: ModelRef | null): boolean {
  return a === null ? b === null : sameModel(a, b);
}

/** The later of two issue times (ISO 8601). */
function newest(a: string | undefined, b: string): string {
  return a !== undefined && Date.parse(a) >= Date.parse(b) ? a : b;
}

/** The retry timer of the candidate's benchmark whose report the device's storage could not take (one: there is one candidate). */
const BENCHMARK_RETRY = 'benchmark';

/** What an agent without a holdout means for a rollout: said at start (cli-command.ts) and at each candidate install. */
export const NO_HOLDOUT_EVIDENCE = 'a rollout\'s relative checks (accuracy, mse, latency) get no evidence from this device';
export const NOT_BENCHMARKED = `candidate installed but not benchmarked: this agent has no --holdout, so ${NO_HOLDOUT_EVIDENCE}`;

/**
 * The edge agent: keeps the model slots (active, candidate, previous) on disk, follows the
 * assignments and fleet commands it receives over MQTT, verifies and installs models, benchmarks
 * candidates next to the active model, serves the active model, and reports through an on-disk
 * outbox. All slot changes run one at a time on a work queue and are committed by an atomic
 * state-file replace, so a crash at any point leaves a consistent state.
 */
/**
 * Benchmarks of one candidate the agent may die in, in the candidate's part (killed for memory, a
 * crash in onnxruntime), before the candidate is reported benchmark-failed rather than benchmarked
 * again at each restart. Three, not one: a power cut or a kill during a benchmark is not the
 * candidate's doing, and the agent cannot tell them apart.
 */
export const BENCHMARK_DEATHS_REFUSED = 3;

export class Agent {
  readonly metrics: AgentMetrics;
  readonly app: Express;
  readonly #options: AgentOptions;
  readonly #deps: AgentDependencies;
  readonly #logger: Logger;
  readonly #publicKey: KeyObject;
  /** The config's server key id, recorded in every state write (SlotState.serverKeyId). */
  readonly #serverKeyId: string;
  readonly #dir: DataDir;
  readonly #state: SlotStateFile;
  readonly #store: ModelStore;
  readonly #models: ModelObtainer;
  readonly #outbox: Outbox;
  readonly #link: MqttLink;
  readonly #heartbeat: HeartbeatBuilder;
  /** The signature and sequence checks of the assignments and fleet commands received; it holds the newest sequence numbers taken in this run. */
  readonly #trust: MessageTrust;
  /** The sessions served: the active model's, and the candidate's for shadow runs. */
  readonly #serving: ServingSlots;
  #queue: Promise<void> = Promise.resolve();
  /** Housekeeping tasks queued and not yet started, by name (#enqueueUnlessQueued). */
  readonly #housekeepingQueued = new Set<string>();
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #staleDownloadTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Set once stop() stops waiting for the work in progress: what that work still does writes no state. */
  #stopGraceOver = false;
  readonly #abort = new AbortController();
  /** The id of the newest assignment received; an older one still queued or downloading is superseded. */
  #latestAssignment: string | undefined;
  /** That assignment itself (see #activationAwaitsBenchmark). */
  #latestAssignmentTaken: Assignment | undefined;
  /** Assignments queued or being processed; one that failed (a full disk) is taken again when it comes again, or on a timer. */
  readonly #assignmentsInHand = new Set<string>();
  /** Fleet commands queued or being processed; one that failed (a full disk) is taken again on a timer. */
  readonly #commandsInHand = new Set<string>();
  readonly #retries: AssignmentRetries;
  /** The assignment whose model is being obtained, and how to cancel that. */
  #obtaining: { assignment: Assignment; controller: AbortController } | undefined;
  /** How to interrupt the benchmark in progress, so that an assignment or fleet command (a rollback) need not wait for it. */
  #benchmarking: { candidate: ModelRef; interrupt: AbortController } | undefined;
  /** Work queued that a benchmark must not hold up (see #interruptBenchmark): a benchmark starting meanwhile steps aside. */
  readonly #waitingWork = new Set<string>();
  readonly #servingStats = { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 };
  /** Reports sent without the outbox, when the disk cannot take them. */
  readonly #direct = new DirectReports();
  /**
   * A benchmark measured whose outcome (its report, or a benchmark-failed answer) the device's
   * storage could not take: saved again as it is, not measured again, while it is still for the
   * candidate, its assignment and the active model of now (dropped as soon as one of them changed).
   */
  /** `deaths`: the report is the verdict of the agent's deaths in the candidate's benchmark (kept on record with the candidate). */
  #unsavedBenchmark: { report: Report; result: 'ok' | 'failed'; deaths: boolean; candidate: ModelRef; active: ModelRef | null; assignmentId: string | null } | undefined;
  /** A rerun of the benchmark is queued (#queueBenchmarkRerun): one at a time. */
  #benchmarkRerunQueued = false;
  /** What the benchmark retry timer's backoff is for (candidate and assignment): another starts afresh. */
  #benchmarkRetryFor: string | undefined;
  /** The fleet commands received and not answered nor given up, in the order received; every state write records them (#write). */
  #pendingCommands: FleetCommand[] = [];
  /** The state write in progress (#save): writes run one at a time. */
  #writes: Promise<void> = Promise.resolve();
  /**
   * Set while the agent runs on a state the disk could not take (#saveOrKeepInMemory): the ids of
   * the reports in it that are not on disk. They are neither moved into the outbox nor sent until
   * a state write records them: a restart before then comes back on the state on disk, which they
   * do not describe. Cleared by the next state write that succeeds.
   */
  #inMemoryOnly: Set<string> | undefined;
  /** While #inMemoryOnly is set: the models state.json names, which garbage collection keeps (#referencedModels). */
  #recordedModels: Set<string> | undefined;
  /** After a start on a corrupt state file, until an active model is set: the models then on disk, which garbage collection keeps (#referencedModels). */
  #keptFromCorruptState: Set<string> | null = null;

  constructor(options: AgentOptions, deps: AgentDependencies) {
    this.#options = options;
    this.#deps = deps;
    const { config } = options;
    this.#logger = deps.logger.child({ deviceId: config.deviceId });
    this.#publicKey = serverPublicKeyOf(config);
    this.#serverKeyId = keyId(this.#publicKey);
    this.metrics = createAgentMetrics();
    this.#retries = new AssignmentRetries(options.assignmentRetryMs);
    this.#trust = new MessageTrust(config.deviceId, this.#publicKey, this.metrics, this.#logger, () => this.#state.state);
    this.#dir = new DataDir(options.dataDir);
    this.#state = new SlotStateFile(this.#dir.stateFile);
    this.#store = new ModelStore(this.#dir);
    const fetcher = new ArtifactFetcher({ url: config.server.url, token: config.server.token, publicKey: this.#publicKey }, this.#dir, (bytes) =>
      this.metrics.downloadedBytes.inc(bytes),
      this.#abort.signal,
      { ...DEFAULT_DOWNLOAD_LIMITS, ...options.downloadLimits },
      deps.freeSpace,
    );
    this.#models = new ModelObtainer({
      store: this.#store,
      fetcher,
      publicKey: this.#publicKey,
      logger: this.#logger,
      attempts: options.downloadAttempts ?? 5,
      retryBaseDelayMs: options.retryBaseDelayMs ?? 1000,
      stopping: this.#abort.signal,
      stopped: () => this.#stopped,
      referencedModels: () => this.#referencedModels(this.#state.state),
    });
    // The outbox holds reports only: an entry for any other topic is junk, removed unsent.
    const reports = reportsTopic(config.deviceId);
    this.#outbox = new Outbox(this.#dir.outboxDir, this.#logger, {
      allowedTopic: (topic) => topic === reports,
      onPendingChange: (pending) => this.metrics.outboxPending.set(pending),
    });
    this.#heartbeat = new HeartbeatBuilder(config.deviceId, deps.clock, { intervalMs: options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS });
    this.#serving = new ServingSlots({
      store: this.#store,
      publicKey: this.#publicKey,
      sessions: deps.sessions,
      logger: this.#logger,
      metrics: this.metrics,
      shadowFraction: options.shadowFraction ?? 0,
      state: () => this.#state.state,
    });
    this.#link = new MqttLink({
      deviceId: config.deviceId,
      broker: config.broker,
      connector: deps.connector,
      logger: this.#logger,
      clock: deps.clock,
      reconnectPeriodMs: options.mqttReconnectMs,
      ...(options.assignmentResyncMs ? { assignmentResyncMs: options.assignmentResyncMs } : {}),
      onMessage: (message) => this.#onMessage(message),
      onDrop: (kind, reason) => this.metrics.droppedMessages.inc({ kind, reason }),
      onConnected: () => {
        void this.#flushOutbox();
        void this.#sendHeartbeat();
      },
      onConnectionChange: (connected) => this.metrics.mqttConnected.set(connected ? 1 : 0),
    });
    this.app = createPredictApp({
      stats: this.#servingStats,
      active: () => this.#serving.active,
      inactiveReason: () => {
        const lost = this.#state.state.lost?.find((model) => model.slot === 'active');
        return lost && !this.#serving.active ? `${lost.signedModel ?? lost.model}@${lost.version} failed verification on this device at start (${lost.reason}); the server's assignment restores it` : undefined;
      },
      candidate: () => this.#serving.candidate,
      shadowFraction: options.shadowFraction ?? 0,
      metrics: this.metrics,
      logger: this.#logger,
      health: () => ({ deviceId: config.deviceId, connected: this.#link.connected, ...this.slots }),
    });
  }

  get deviceId(): string {
    return this.#options.config.deviceId;
  }

  get slots(): { active: ModelRef | null; candidate: ModelRef | null; previous: ModelRef | null } {
    const { active, candidate, previous } = this.#state.state;
    return { active, candidate, previous };
  }

  get connected(): boolean {
    return this.#link.connected;
  }

  /** Recovers the slots from disk, serves the last good active model, then connects. */
  async start(): Promise<void> {
    await this.#recover();
    this.#link.start();
    const interval = this.#options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.#heartbeatTimer = setInterval(() => {
      void this.#sendHeartbeat();
      // Also a state kept in memory (the disk took no writes): recorded first, and its reports moved then.
      if (this.#state.state.unsentReports.length > 0 || this.#inMemoryOnly) this.#enqueueUnlessQueued('move reports to the outbox', async () => {
        await this.#moveUnsentReports();
        void this.#flushOutbox();
      });
      else if (this.#direct.holding) void this.#flushOutbox();
    }, interval);
    this.#heartbeatTimer.unref();
    // A device runs for months: downloads given up since the start must not stay on its disk.
    this.#staleDownloadTimer = setInterval(() => this.#enqueueUnlessQueued('remove stale downloads', () => this.#removeStaleDownloads()), this.#options.staleDownloadSweepMs ?? STALE_DOWNLOAD_SWEEP_MS);
    this.#staleDownloadTimer.unref();
    const { pending, pendingCommands, candidate, candidateBenchmarked, handledIds } = this.#state.state;
    if (pending) {
      this.#latestAssignment = pending.id;
      this.#latestAssignmentTaken = pending;
    }
    // Work cut short by a crash: the fleet commands first, in the order the server issued them, then
    // the pending assignment, judged afterwards as on receipt (#takeAssignment): a rollback never
    // waits behind it, an activation issued before a rollback carried out is moot (#mootActivation),
    // a candidate issued before a drop was cancelled by it, and one issued after them is carried out.
    const commands = (pendingCommands ?? []).filter((command) => !handledIds.includes(command.id));
    for (const command of commands.sort((a, b) => Date.parse(a.issuedAt) - Date.parse(b.issuedAt))) {
      if (command.seq >= this.#trust.newestSeq.command.seq) this.#trust.newestSeq.command = { seq: command.seq, id: command.id };
      this.#logger.info({ commandId: command.id, command: command.command }, 'resuming a fleet command received before the restart');
      this.#enqueueCommand(`resume command ${command.id}`, command, this.#latestAssignment);
    }
    if (pending) this.#enqueueAssignment(`resume assignment ${pending.id}`, pending, () => this.#takeAssignment(pending));
    // A benchmark cut short by the stop or a crash runs again, after that work (which may replace
    // or activate its candidate, or benchmark it itself: it runs only if still needed then).
    if (candidate && !candidateBenchmarked) this.#queueBenchmarkRerun('resume benchmark');
  }

  /** Stops; work in progress gets stopGraceMs (the state on disk is crash-safe either way). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#staleDownloadTimer);
    this.#retries.clear();
    const settled = await Promise.race([this.#queue.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), this.#options.stopGraceMs ?? 5000).unref())]);
    this.#stopGraceOver = true;
    await this.#link.stop();
    await this.#serving.release();
    // Work still running (a model's session being loaded) may put a session in a slot after this
    // release: it is let go too once that work ends, rather than held for the process's life (an
    // agent among many in one process, or a test, goes on after stop()).
    if (!settled) void this.#queue.then(() => this.#serving.release());
  }

  /** Resolves when the work queue is idle (tests, benchmarks). */
  idle(): Promise<void> {
    return this.#queue;
  }

  async #recover(): Promise<void> {
    // Removing what a crash left behind is best effort (#cleanupFailed): a disk that takes no
    // writes (read-only) must not keep the agent from serving its model.
    await this.#dir.prepare(this.#cleanupFailed);
    let state: SlotState;
    let corrupt = false;
    try {
      state = await this.#state.load();
    } catch (error) {
      if (!(error instanceof CorruptStateError)) throw error;
      // A device must come back on its own: start with empty slots, keep every model on disk
      // (no garbage collection this time), and let the retained assignment restore the active
      // model — from disk, without a download. A file the disk does not let go of (read-only)
      // stays where it is until the first state write, which sets it aside first.
      const aside = await this.#state.setAside(this.#deps.clock()).catch((failure: unknown) => {
        this.#logger.warn({ file: this.#dir.stateFile, err: describeFileError(this.#dir.stateFile, failure) }, 'the corrupt state file cannot be set aside now; it is set aside before the first state write');
        return this.#dir.stateFile;
      });
      this.#logger.error({ err: error.message, keptAs: aside }, 'the agent state file is corrupt; starting with empty slots until the server\'s assignment restores them');
      state = this.#state.state;
      corrupt = true;
      this.#keptFromCorruptState = new Set(await this.#store.installedIds());
    }
    this.#pendingCommands = state.pendingCommands ?? [];
    let changed = false;
    const lost: LostModel[] = [];
    const failures = new Map<'active' | 'previous' | 'candidate', string | null>();
    /** The model each slot's signed manifest names, where it verified (a state file may name it otherwise). */
    const signedNames = new Map<'active' | 'previous' | 'candidate', string>();
    for (const slot of ['active', 'previous', 'candidate'] as const) {
      const ref = state[slot];
      if (!ref) continue;
      const verified = await this.#store.loadVerified(ref.sha256, this.#publicKey);
      // The signed manifest names its model: a state file naming it otherwise (edited, or written
      // by a bug) would have the agent serve and report it under a name it was never signed with.
      failures.set(slot, 'failure' in verified ? verified.failure : manifestIdentityProblem(verified.manifest, ref, `${this.#dir.stateFile} (${slot})`));
      if (!('failure' in verified)) signedNames.set(slot, verified.manifest.name);
    }
    this.#refuseOtherServersKey(state, failures);
    for (const [slot, failure] of failures) {
      const ref = state[slot]!;
      if (failure !== null) {
        this.#logger.error({ slot, model: ref.model, version: ref.version, reason: failure }, 'a model on disk failed verification; dropping it from its slot');
        state = { ...state, [slot]: null };
        const signedModel = signedNames.get(slot);
        lost.push({ model: ref.model, version: ref.version, sha256: ref.sha256, slot, reason: failure, at: this.#deps.clock().toISOString(), reported: false, ...(signedModel ? { signedModel } : {}) });
        changed = true;
      }
    }
    // Lost at this start, or at an earlier one whose restore has not come yet (the slot empty since).
    const lostActive = lost.find((model) => model.slot === 'active') ?? state.lost?.find((model) => model.slot === 'active');
    const lostActiveModel = lostActive ? (lostActive.signedModel ?? lostActive.model) : undefined;
    if (!state.active && state.previous) {
      if (lostActive && (signedNames.get('previous') ?? state.previous.model) === lostActiveModel) {
        this.#logger.warn({ model: state.previous.model, version: state.previous.version }, `serving the previous model ${state.previous.model}@${state.previous.version}: the active one (${lostActive.model}@${lostActive.version}) is unusable`);
        // The previous model may be the candidate too (assigned again as one): it is active now, not
        // both; nor does a candidate of another model stay beside it.
        const candidateStays = candidateStaysBeside(state.candidate, state.previous);
        state = { ...state, active: state.previous, previous: null, ...(candidateStays ? {} : { candidate: null, candidateBenchmarked: true }) };
        changed = true;
      } else {
        // The previous model is another model (the device was moved from it), or which model was
        // lost is no longer known: it may read other features, or worse, the same ones with another
        // meaning. Not served in its place: the device answers 503 until the server assigns the
        // active model again.
        const lostOne = lostActive ? `the active model ${lostActiveModel}@${lostActive.version} is unusable` : 'the active model was lost';
        this.#logger.error(
          { ...(lostActive ? { model: lostActive.model, version: lostActive.version } : {}), previous: `${state.previous.model}@${state.previous.version}` },
          `no model served: ${lostOne}, and the previous one (${state.previous.model}@${state.previous.version}) is ${lostActive ? 'another model' : 'not known to be the same model'}; /v1/predict answers 503 until the server assigns an active model`,
        );
      }
    }
    // A state an older agent wrote may pair an active model with another model's candidate: the candidate goes.
    if (state.active && state.candidate && !candidateStaysBeside(state.candidate, state.active) && !sameModel(state.candidate, state.active)) {
      this.#logger.warn({ active: state.active.model, candidate: `${state.candidate.model}@${state.candidate.version}` }, 'dropping a candidate of another model than the active one');
      state = { ...state, candidate: null, candidateBenchmarked: true };
      changed = true;
    }
    // The lost models are reported, and restored when the server's retained assignment names one.
    // A disk that takes no writes (full, read-only) does not stop the fallback: the agent serves the
    // previous model from memory, and the change and its loss reports are recorded (and the reports
    // sent) once the disk takes writes (#saveOrKeepInMemory).
    if (changed) await this.#saveOrKeepInMemory(withLost(state, lost, (...report) => this.#lossReport(...report)), 'models dropped at start');
    await this.#outbox.init();
    await this.#moveUnsentReports();
    // The pending assignment's model too: a crash after its install but before the state named it
    // would otherwise lose a finished download, and the assignment would download it again.
    if (!corrupt) await this.#store.collectGarbage(new Set([...this.#referencedModels(state), ...(state.pending ? [state.pending.sha256] : [])]), this.#cleanupFailed);
    await this.#removeStaleDownloads();
    await this.#serving.start(state.active);
    this.#logger.info({ active: state.active?.version ?? null, candidate: state.candidate?.version ?? null }, 'agent state recovered');
    this.#checkHoldoutFitsActive();
  }

  /**
   * Every model in the slots signed by another key than the config's serverPublicKey, and none by
   * it (nor vouched for by it: a model of a --trusted-key signer carries the server's endorsement,
   * which the config's key cannot check either): the config names another server's key (a copy from another device, an edit), far more likely
   * than every model going bad at once. Dropping them would delete the device's models for a
   * config mistake; the start stops instead, naming both keys, and nothing on disk changes. Unless
   * the state was written under this very key (serverKeyId): the config is the one the agent last
   * ran with, and the models failing are damaged (an endorsement, signer.json, with a changed
   * byte): dropped and restored, as any damaged file is.
   */
  #refuseOtherServersKey(state: SlotState, failures: ReadonlyMap<'active' | 'previous' | 'candidate', string | null>): void {
    if (failures.size === 0) return;
    if (state.serverKeyId === this.#serverKeyId) return;
    // Signed by another key than the config's, with no endorsement or one the config's key cannot check.
    const otherKey = /: signature: made with key (\S+), not the server's key \S+(?:, and the server vouched for no other key$|: the endorsement of signer key )/;
    const keys = new Set<string>();
    for (const failure of failures.values()) {
      const match = failure === null ? null : otherKey.exec(failure);
      if (!match) return;
      keys.add(match[1]!);
    }
    const models = [...failures.keys()].map((slot) => `${state[slot]!.model}@${state[slot]!.version} (${slot})`).join(', ');
    const lastRun = state.serverKeyId === undefined ? '' : ` (the agent last ran here with server key ${state.serverKeyId})`;
    throw new UserError(
      `the models in ${this.#dir.root} (${models}) are signed with key ${[...keys].join(', ')}, but this agent's config trusts server key ${this.#serverKeyId} (serverPublicKey)${lastRun}: ` +
        "if the config is another server's or device's, put this device's config back; if the device was enrolled again with a server that has a new key, start it with an empty --data-dir. Nothing on disk was changed",
    );
  }

  /**
   * Said at start, not only at the next candidate's benchmark: a holdout the active model cannot
   * read (a feature column it needs missing or not numeric, a label not one of its classes) fails
   * every benchmark, for every candidate that reads it the same way, until the file is fixed.
   */
  #checkHoldoutFitsActive(): void {
    const holdout = this.#options.holdout;
    const active = this.#serving.active;
    if (!holdout || !active) return;
    try {
      alignHoldout(holdout, active.manifest);
    } catch (error) {
      this.#logger.error(
        { holdout: holdout.source, active: active.ref.version, err: errorMessage(error) },
        'the holdout does not fit the active model: benchmarks that read it so fail (each answered benchmark-failed) until it is fixed',
      );
    }
  }

  /** A lost model told to the server as a refusal of `answers` (GET /api/devices/:id shows it as the device's lastRefusal). */
  #lossReport(answers: string, role: Role, ref: ModelRef, reason: string, key: string): AssignmentReport {
    return this.#assignmentReport(answers, 'refused', role, ref, reason, key);
  }

  /** Whether `assignment` restores a model lost from the device (lost-models.ts): taken again although it was handled. */
  #restores(assignment: Assignment): boolean {
    const state = this.#state.state;
    return restores(state, assignment, Math.max(this.#trust.newestSeq.assignment.seq, state.assignmentSeq ?? -1));
  }

  /** A lost model that no answer on record had put in its slot is reported as a refusal of the assignment restoring it. */
  async #reportLossTo(assignment: Assignment): Promise<void> {
    const loss = withLossReportedTo(this.#state.state, assignment, (...report) => this.#lossReport(...report));
    if (loss) await this.#commit(loss.state, loss.report);
  }

  async #removeStaleDownloads(): Promise<void> {
    const stale = await this.#store.removeStaleDownloads(STALE_DOWNLOAD_MS, this.#deps.clock(), this.#cleanupFailed);
    if (stale.length > 0) this.#logger.info({ files: stale }, 'removed partial downloads untouched for a week');
  }

  /** A leftover (a crash's temp file, a staging directory, a stale download) the disk did not let go of: logged, and left for a later try. */
  readonly #cleanupFailed = (path: string, error: unknown): void => {
    this.#logger.warn({ file: path, err: describeFileError(path, error) }, 'cannot remove a leftover file; left in place');
  };

  /**
   * Saves `next`, or, when the device's storage cannot take it (a full or read-only disk: a system
   * error), runs on it from memory (#inMemoryOnly) and returns false. `state.json` keeps the state it
   * had, which a restart comes back on; the next state write that succeeds records this one (every
   * write is of the state in memory), tried again at each heartbeat (#moveUnsentReports).
   */
  async #saveOrKeepInMemory(next: SlotState, what: string): Promise<boolean> {
    try {
      await this.#save(next);
      return true;
    } catch (error) {
      if (!isSystemError(error)) throw error;
      // As #write would have written it.
      const written = this.#asWritten(next);
      const onDisk = new Set(this.#state.state.unsentReports.filter((report) => !this.#inMemoryOnly?.has(report.id)).map((report) => report.id));
      // The models state.json names stay on disk while it is not replaced: a restart comes back on them.
      if (!this.#inMemoryOnly) this.#recordedModels = modelsOf(this.#state.state);
      this.#state.keepInMemory(written);
      this.#inMemoryOnly = new Set(next.unsentReports.filter((report) => !onDisk.has(report.id)).map((report) => report.id));
      this.#logger.warn({ err: describeSystemError(error), change: what }, 'the state change cannot be recorded on disk; running on it from memory until the disk takes writes (its reports are sent then)');
      return false;
    }
  }

  #onMessage(message: FleetMessage): void {
    if (this.#stopped) return;
    const state = this.#state.state;
    if (message.kind === 'assignment') {
      const assignment = message.payload;
      if (this.#assignmentsInHand.has(assignment.id)) return;
      const restoring = this.#restores(assignment);
      if (state.handledIds.includes(assignment.id) && !restoring) return;
      if (!this.#trust.trusted('assignment', message.raw ?? assignment, assignment.id, assignment.seq, restoring)) return;
      if (restoring) this.#logger.warn({ assignmentId: assignment.id, version: assignment.version }, 'taking the retained assignment again: its model was lost from the device');
      // The device's assignment topic holds one assignment: a newer one replaces the one being
      // downloaded (cancelled) and any still queued (answered as superseded when their turn comes).
      this.#latestAssignment = assignment.id;
      this.#latestAssignmentTaken = assignment;
      if (this.#obtaining && this.#obtaining.assignment.id !== assignment.id) this.#obtaining.controller.abort(new Error(`superseded by assignment ${assignment.id}`));
      // Activating the candidate being benchmarked waits for the benchmark: its report is the
      // evidence a rollout's analysis counts. Anything else (a revert, another candidate) does not.
      // (An activation of a candidate not benchmarked yet runs its benchmark first: #processAssignment.)
      const activatesBenchmarked = assignment.role === 'active' && sameModel(this.#benchmarking?.candidate ?? null, assignment);
      const started = activatesBenchmarked ? () => {} : this.#interruptBenchmark(`assignment ${assignment.id}`);
      this.#enqueueAssignment(`assignment ${assignment.id}`, assignment, () => (started(), this.#takeAssignment(assignment)));
    } else if (message.kind === 'commands') {
      const command = message.payload;
      if (state.handledIds.includes(command.id) || this.#commandsInHand.has(command.id)) return;
      if (!selectorMatches(command.selector, this.deviceId, this.#options.config.labels)) return;
      if (!this.#trust.trusted('command', message.raw ?? command, command.id, command.seq)) return;
      this.#logger.info({ commandId: command.id, command: command.command }, 'fleet command received');
      // Saved before it is queued: read, the broker counts it delivered, and a crash must not lose it.
      // A write the disk cannot take is logged; the command is queued from memory all the same, and
      // the next state write that succeeds records it while it is unanswered (#write). A rollback or
      // a drop is then carried out from memory (#rollback, #dropCandidate).
      this.#pendingCommands = [...this.#pendingCommands, command];
      this.#save().catch((error: unknown) =>
        this.#logger.warn({ commandId: command.id, err: errorMessage(error) }, `the fleet command received cannot be recorded on disk; ${UNRECORDED_COMMAND}`),
      );
      // A candidate assigned before a drop would be dropped once installed, and a rollback must not
      // wait for a download (of a candidate, or of an activation it wins over): the download stops now.
      // Not for a rollback that has nothing to roll back to (no previous model on disk): it changes
      // nothing, so the download goes on, and the rollback is taken after it.
      const obtaining = this.#obtaining?.assignment;
      const cancels = () => (command.command === 'rollback' ? this.#canRollBack() : obtaining?.role === 'candidate');
      if (obtaining && Date.parse(obtaining.issuedAt) <= Date.parse(command.issuedAt) && cancels()) {
        this.#obtaining!.controller.abort(new Error(`cancelled by ${command.command} ${command.id}`));
      }
      this.#enqueueCommand(`command ${command.id}`, command, this.#latestAssignment);
    }
  }

  /** Whether a rollback could be carried out now: a previous model is in its slot and its model.onnx on disk (verified when it runs). */
  #canRollBack(): boolean {
    const { previous } = this.#state.state;
    return previous !== null && existsSync(join(this.#dir.modelDir(previous.sha256), ONNX_FILE));
  }

  /**
   * Queues a fleet command (received, resumed at start or taken again), ahead of any benchmark: it
   * interrupts one running (a rollback never waits for it). If it fails on the device (a full disk),
   * it is taken again on a timer with a backoff, as an assignment is, while no newer assignment or
   * command has come since `latestAssignment` (those decide what the device runs now).
   */
  #enqueueCommand(what: string, command: FleetCommand, latestAssignment: string | undefined): void {
    const { id } = command;
    this.#commandsInHand.add(id);
    this.#enqueueAheadOfBenchmark(what, `fleet command ${id} (${command.command})`, async () => {
      let failure: unknown;
      try {
        await this.#runCommand(command);
      } catch (error) {
        failure = error ?? new Error('failed');
      } finally {
        this.#commandsInHand.delete(id);
      }
      if (failure === undefined || this.#stopped) return this.#retries.done(id);
      const retryInMs = this.#retries.schedule(id, () => {
        if (this.#stopped || this.#commandsInHand.has(id) || this.#state.state.handledIds.includes(id)) return;
        if (this.#trust.newestSeq.command.id !== id || this.#latestAssignment !== latestAssignment) {
          this.#logger.warn({ commandId: id }, 'not taking a failed fleet command again: a newer assignment or command came since');
          // Nor at the next start.
          this.#enqueueAheadOfBenchmark(`give up command ${id}`, `fleet command ${id} given up`, () => this.#forgetCommands([id]));
          return this.#retries.done(id);
        }
        this.#enqueueCommand(`retry command ${id}`, command, latestAssignment);
      });
      // One line: a task fails for a reason worth reading (a full disk), never for a stack trace.
      this.#logger.error({ err: errorMessage(failure), task: what, retryInMs }, 'agent task failed');
    });
  }

  /**
   * A benchmark holds the work queue for as long as its bounded samples take (seconds, or minutes
   * with large --bench-samples): work that arrives meanwhile (an assignment, a rollback) interrupts
   * it instead of waiting. The benchmark runs again after that work if its candidate is still there.
   */
  #interruptBenchmark(by: string): () => void {
    this.#benchmarking?.interrupt.abort(new BenchmarkInterrupted(by));
    // Until that work starts, a benchmark starting ahead of it (after an install) steps aside too.
    this.#waitingWork.add(by);
    return () => this.#waitingWork.delete(by);
  }

  /** The work on an assignment received (or taken again): answered once, unless its model was lost and it restores it. */
  async #takeAssignment(assignment: Assignment): Promise<void> {
    // Refused already, but the disk could not take the refusal: it is recorded now, not worked out again.
    if (this.#direct.refused(assignment.id)) return this.#recordHeld();
    const current = this.#state.state;
    if (current.handledIds.includes(assignment.id) && !this.#restores(assignment)) return;
    if (this.#latestAssignment !== assignment.id) return this.#refuse(assignment, `superseded by assignment ${this.#latestAssignment}`, true);
    // A rollback (or a drop of its candidate) issued after it and carried out makes it moot, however
    // often it was taken before (its retry timer, a redelivery, a restart, a deferral).
    const moot = this.#mootActivation(assignment);
    if (moot) return this.#refuseFromState(assignment, moot);
    const first = current.pending?.id !== assignment.id;
    // A fleet command that failed and waits to be taken again, issued before this assignment: this
    // one decides what the device runs, so that command is given up, also at the next start.
    const stale = this.#pendingCommands.filter((command) => !this.#commandsInHand.has(command.id) && Date.parse(command.issuedAt) <= Date.parse(assignment.issuedAt));
    this.#pendingCommands = this.#pendingCommands.filter((command) => !stale.includes(command));
    if (first || stale.length > 0) {
      const pending: SlotState = { ...current, pending: assignment, assignmentSeq: Math.max(current.assignmentSeq ?? -1, assignment.seq) };
      // A revert (back to the previous model, on disk) works on a disk that takes no writes (full,
      // read-only): carried out from memory, and recorded and answered once the disk takes writes
      // (#rollback). Any other assignment needs the disk: it is taken again on its retry timer.
      if (isRevert(current, assignment)) await this.#saveOrKeepInMemory(pending, `assignment ${assignment.id} received`);
      else await this.#save(pending);
    }
    await this.#reportLossTo(assignment);
    await this.#processAssignment(assignment);
  }

  /**
   * Queues the work on an assignment. If it fails (the device's own fault: a full disk, say), the
   * assignment is not marked handled, and it is taken again on a timer with a backoff, or at the broker's next delivery of it (the periodic resubscription, or a reconnect),
   * whichever comes first. A refusal the disk could not take is taken again the same way, until a
   * state write records it.
   */
  #enqueueAssignment(what: string, assignment: Assignment, task: () => Promise<void>): void {
    const { id } = assignment;
    this.#assignmentsInHand.add(id);
    this.#enqueue(what, async () => {
      let failure: unknown;
      try {
        await task();
      } catch (error) {
        failure = error ?? new Error('failed');
      } finally {
        this.#assignmentsInHand.delete(id);
      }
      if (this.#stopped) return this.#retries.done(id);
      this.#benchmarkLeftBy(assignment);
      if (failure instanceof ActivationDeferred) {
        // Not answered: taken again behind the work that interrupted its candidate's benchmark.
        this.#logger.info({ assignmentId: id }, 'activation waits: its candidate\'s benchmark was interrupted; it is taken again after that work');
        return this.#enqueueAssignment(`activation ${id} after the work that interrupted its benchmark`, assignment, () => this.#takeAssignment(assignment));
      }
      const refusalHeld = this.#direct.refused(id);
      if (failure === undefined && !refusalHeld) return this.#retries.done(id);
      const retryInMs = this.#retries.schedule(id, () => {
        if (this.#stopped || this.#assignmentsInHand.has(id)) return;
        this.#enqueueAssignment(`retry assignment ${id}`, assignment, () => this.#takeAssignment(assignment));
      });
      if (failure === undefined) return;
      if (failure instanceof DownloadDeferred) {
        this.#logger.warn({ err: failure.message, assignmentId: id, retryInMs }, 'model download failed; the assignment is taken again later (a network or server failure is no verdict on the model: nothing is answered)');
        return;
      }
      // One line: a task fails for a reason worth reading (a full disk), never for a stack trace.
      // The server hears nothing until then: the protocol has no non-final answer ("failed here, retrying").
      this.#logger.error({ err: errorMessage(failure), task: what, retryInMs }, 'agent task failed');
    });
  }

  /**
   * An activation of the candidate owns its benchmark until it is answered (#activationAwaitsBenchmark):
   * answered without it (superseded, moot, refused), it leaves the candidate, if still there and
   * unbenchmarked, to be benchmarked all the same.
   */
  #benchmarkLeftBy(assignment: Assignment): void {
    const { candidate, candidateBenchmarked, handledIds } = this.#state.state;
    if (assignment.role !== 'active' || candidateBenchmarked || !sameModel(candidate, assignment)) return;
    if (handledIds.includes(assignment.id) || this.#direct.refused(assignment.id)) this.#queueBenchmarkRerun(`benchmark after activation ${assignment.id} was answered without it`);
  }

  /** Records the refusals the disk could not take when they were made; throws while it still cannot. */
  async #recordHeld(): Promise<void> {
    await this.#save(this.#state.state);
    await this.#moveUnsentReports();
    void this.#flushOutbox();
  }

  /** Queues work that a benchmark must not hold up: it interrupts one running, and one starting before it steps aside (#interruptBenchmark). */
  #enqueueAheadOfBenchmark(what: string, by: string, task: () => Promise<void>): void {
    const started = this.#interruptBenchmark(by);
    this.#enqueue(what, async () => {
      started();
      await task();
    });
  }

  /**
   * Queues a periodic housekeeping task unless the same one is already queued and not yet started:
   * a timer that fires while a long download or benchmark holds the queue adds nothing more.
   */
  #enqueueUnlessQueued(what: string, task: () => Promise<void>): void {
    if (this.#housekeepingQueued.has(what)) return;
    this.#housekeepingQueued.add(what);
    this.#enqueue(what, () => {
      this.#housekeepingQueued.delete(what);
      return task();
    });
  }

  #enqueue(what: string, task: () => Promise<void>): void {
    this.metrics.workQueued.inc();
    this.#queue = this.#queue
      .then(task)
      .catch((error: unknown) => {
        // One line: a task fails for a reason worth reading (a full disk), never for a stack trace.
        this.#logger.error({ err: errorMessage(error), task: what }, 'agent task failed');
      })
      .finally(() => this.metrics.workQueued.dec());
  }

  async #processAssignment(assignment: Assignment): Promise<void> {
    this.#logger.info({ assignmentId: assignment.id, model: assignment.model, version: assignment.version, role: assignment.role }, 'assignment received');
    const ref: ModelRef = { model: assignment.model, version: assignment.version, sha256: assignment.sha256 };
    const state = this.#state.state;
    if (assignment.role === 'active') {
      if (sameModel(state.active, ref)) return this.#finish(assignment, 'activated', 'already the active model');
      // The candidate it activates has no benchmark yet (its benchmark stepped aside for this
      // work, or is queued behind it): it runs first, since its report is the evidence a rollout's
      // analysis counts. The activation owns that benchmark until it is answered: no timer reruns it
      // meanwhile (#benchmarkAgain); a report the disk cannot take fails the activation, which its
      // own retry takes again (saving the kept report again first).
      if (sameModel(state.candidate, ref) && !state.candidateBenchmarked) {
        this.#retries.done(BENCHMARK_RETRY);
        const run = await this.#benchmarkCandidate({ rethrowStorageFailure: true });
        if (run === 'stopped') throw new StoppingError('stopping');
        // A fleet command or a newer assignment waiting behind it, or arriving during the benchmark,
        // goes first (a rollback must not wait for a benchmark): the activation is taken again after
        // that work (#enqueueAssignment), never carried out without the report (one answered without
        // it, superseded or moot, leaves the benchmark to run on its own: #benchmarkLeftBy).
        if (run === 'interrupted') throw new ActivationDeferred();
      }
      // A candidate the agent died in benchmarking (BENCHMARK_DEATHS_REFUSED times) is not made the active model either.
      if (this.#benchmarkDeaths(ref) >= BENCHMARK_DEATHS_REFUSED) {
        return this.#refuse(assignment, `${ref.version} is not activated: the agent ended while benchmarking it, ${BENCHMARK_DEATHS_REFUSED} times (killed for memory, a crash, or a power loss)`);
      }
      // From disk when the previous model is still sound; else (damaged on disk, cannot load) it is
      // downloaded again like any assignment: a revert must not fail for want of a local copy.
      if (sameModel(state.previous, ref) && (await this.#rollback(assignment.id, assignment, { orDownload: true }))) return;
    } else {
      if (sameModel(state.active, ref)) return this.#refuseFromState(assignment, `${ref.version} is already the active model`);
      if (sameModel(state.candidate, ref)) return this.#rebenchmarkCandidate(assignment, ref);
    }
    let model: InstalledModel;
    const controller = new AbortController();
    this.#obtaining = { assignment, controller };
    if (this.#latestAssignment !== undefined && this.#latestAssignment !== assignment.id) controller.abort(new Error(`superseded by assignment ${this.#latestAssignment}`));
    try {
      model = await this.#models.obtain(assignment, controller.signal);
    } catch (error) {
      // Stopping is not a verdict on the assignment: it stays pending and is resumed.
      if (error instanceof StoppingError) return;
      // Nor is a server or network that stayed down: taken again on its retry timer (#enqueueAssignment).
      if (error instanceof DownloadDeferred) throw error;
      return this.#refuse(assignment, errorMessage(error));
    } finally {
      this.#obtaining = undefined;
    }
    // A signed artifact can still hold a model.onnx that onnxruntime cannot load, or one that
    // disagrees with its manifest: refused here, before any slot changes, and removed again.
    let serving: ServingModel;
    try {
      serving = await this.#serving.loadFrom(ref, model);
    } catch (error) {
      await this.#refuse(assignment, `the model cannot run: ${errorMessage(error)}`);
      await this.#store.collectGarbage(this.#referencedModels(this.#state.state));
      return;
    }
    if (assignment.role === 'candidate') await this.#installCandidate(assignment, ref, serving);
    else await this.#activate(assignment, ref, serving);
  }

  /**
   * A new assignment of the candidate already in its slot (a rollout of a version an operator
   * assigned before, or one installed while the agent ran without a holdout): answered as installed,
   * and benchmarked again for this assignment, as an install would be: fresh evidence for the
   * rollout that sent it, whose analysis window starts when the rollout did (docs/rollout-spec.md).
   */
  async #rebenchmarkCandidate(assignment: Assignment, ref: ModelRef): Promise<void> {
    const benchmark = this.#options.holdout !== undefined;
    const state = withAssignmentHandled(this.#state.state, assignment.id);
    await this.#commit(
      // A new assignment of it (a new rollout) gives it a new chance: the deaths counted before go.
      { ...state, candidateBenchmarked: !benchmark, benchmarkStarts: undefined, candidateAssignmentId: assignment.id, candidateIssuedAt: assignment.issuedAt, pending: null },
      this.#assignmentReport(assignment.id, 'installed', 'candidate', ref, 'already the candidate'),
    );
    if (benchmark) {
      this.#retries.done(BENCHMARK_RETRY);
      await this.#benchmarkCandidate();
    } else this.#logger.warn({ version: ref.version }, NOT_BENCHMARKED);
  }

  /** `checked` is the candidate's session from the load check, held until shadow serving has taken its own lease on it. */
  async #installCandidate(assignment: Assignment, ref: ModelRef, checked: ServingModel): Promise<void> {
    const benchmark = this.#options.holdout !== undefined;
    const state = withAssignmentHandled(this.#state.state, assignment.id);
    try {
      await this.#commit({ ...state, candidate: ref, candidateBenchmarked: !benchmark, benchmarkStarts: undefined, candidateAssignmentId: assignment.id, candidateIssuedAt: assignment.issuedAt, pending: null }, this.#assignmentReport(assignment.id, 'installed', 'candidate', ref, null));
      await this.#serving.refreshCandidate();
    } finally {
      await checked.lease.release();
    }
    this.#serving.publishModelInfo();
    await this.#store.collectGarbage(this.#referencedModels(this.#state.state));
    if (benchmark) {
      this.#retries.done(BENCHMARK_RETRY);
      await this.#benchmarkCandidate();
    } else this.#logger.warn({ version: ref.version }, NOT_BENCHMARKED);
  }

  async #activate(assignment: Assignment, ref: ModelRef, next: ServingModel): Promise<void> {
    // A revert is answered as one however its model came (from disk, or downloaded again when that copy was unusable).
    const back = assignment.revert === true;
    this.#logger.info({ version: ref.version }, back ? 'rolling back (the model downloaded or loaded again)' : 'activating');
    const state = this.#state.state;
    // A candidate of another model than the one now active has nothing left to replace (the server
    // never assigns one): it goes, not kept beside a wine model as iris's candidate.
    const candidateStays = candidateStaysBeside(state.candidate, ref);
    crashPoint('activation:before-state');
    await this.#serving.releasingOnFailure(next, () =>
      this.#commit(
        {
          ...withAssignmentHandled(state, assignment.id),
          previous: state.active ?? state.previous,
          active: ref,
          candidate: candidateStays ? state.candidate : null,
          candidateBenchmarked: candidateStays ? state.candidateBenchmarked : true,
          pending: null,
        },
        this.#assignmentReport(assignment.id, back ? 'rolled-back' : 'activated', 'active', ref, null),
        () => crashPoint('activation:after-state'),
      ),
    );
    await this.#serving.swapActive(next);
    await this.#store.collectGarbage(this.#referencedModels(this.#state.state));
  }

  /**
   * Makes `previous` active again (no download); answers an assignment or a fleet command. With
   * `orDownload`, an unusable previous model is forgotten and removed instead of refused, and the
   * result is false: the caller then downloads it as for any assignment.
   */
  async #rollback(answers: string, assignment?: Assignment, options: { orDownload?: boolean } = {}, command?: FleetCommand): Promise<boolean> {
    const state = this.#state.state;
    // A fleet command leaves the pending assignment pending: taken again, it sees what the command did (#mootActivation).
    const handled = (current: SlotState) => (assignment ? { ...withAssignmentHandled(current, answers), pending: null } : withHandled(current, answers));
    const target = state.previous;
    if (!target) {
      if (assignment) await this.#refuse(assignment, 'no previous model on disk to roll back to');
      else {
        const subject = state.active ?? { model: 'none', version: 'none', sha256: '0'.repeat(64) };
        await this.#commit(handled(state), this.#assignmentReport(answers, 'refused', 'active', subject, 'no previous model on disk to roll back to'));
      }
      return true;
    }
    const verified = await this.#store.loadVerified(target.sha256, this.#publicKey);
    let next: ServingModel | undefined;
    let failure: string | undefined;
    if ('failure' in verified) failure = verified.failure;
    else {
      try {
        next = await this.#serving.loadFrom(target, verified);
      } catch (error) {
        failure = errorMessage(error);
      }
    }
    // Only files that fail verification are damaged. A model that verifies but would not load now
    // (out of memory, too many open files) stays: it is the only copy a revert can use offline.
    const damaged = 'failure' in verified;
    if (!next && options.orDownload) {
      if (damaged) {
        this.#logger.warn({ version: target.version, reason: failure }, 'the previous model on disk is damaged; downloading it again');
        await this.#save({ ...state, previous: null });
        await this.#store.collectGarbage(this.#referencedModels(this.#state.state));
      }
      // Else the assignment's usual path takes it from the store (no download) and tries it once more.
      return false;
    }
    if (!next) {
      const report = this.#assignmentReport(answers, 'refused', 'active', target, `previous model unusable: ${failure}`);
      await this.#commit({ ...handled(state), previous: damaged ? null : state.previous }, report);
      return true;
    }
    crashPoint('activation:before-state');
    const change: SlotState = {
      ...handled(state),
      ...(command ? { rolledBackAt: newest(state.rolledBackAt, command.issuedAt) } : {}),
      active: target,
      previous: state.active,
      candidate: candidateStaysBeside(state.candidate, target) ? state.candidate : null,
    };
    // Going back (a fleet command's rollback, a rollout's revert) is answered as one; an activation
    // of the model that happens to be in the previous slot (a promotion after a rollback of the same
    // version) is an activation, from disk.
    const back = command !== undefined || assignment?.revert === true;
    const report = this.#assignmentReport(answers, back ? 'rolled-back' : 'activated', 'active', target, null);
    const afterStateWrite = () => crashPoint('activation:after-state');
    // A rollback always works: a fleet command's, or an assignment's (a revert), is carried out from
    // memory at once when the disk takes no writes (full, read-only), and recorded and answered once
    // it does (#saveOrKeepInMemory; a restart before then comes back on state.json as it is).
    let recorded = true;
    await this.#serving.releasingOnFailure(next, async () => {
      recorded = await this.#commitOrKeepInMemory(change, report, `${command ? 'rollback' : back ? 'revert' : 'activation'} ${answers}`, afterStateWrite);
    });
    await this.#serving.swapActive(next);
    const done = back ? 'rolled back to the previous model' : 'activated the previous model (from disk, no download)';
    if (recorded) this.#logger.info({ version: target.version }, done);
    else this.#logger.warn({ version: target.version, [command ? 'commandId' : 'assignmentId']: answers }, `${done} in memory: the disk takes no writes; the ${back ? 'rollback' : 'activation'} is recorded and answered once it does (a restart before then comes back on the state on disk)`);
    return true;
  }

  async #runCommand(command: FleetCommand): Promise<void> {
    if (this.#state.state.handledIds.includes(command.id)) return;
    // Saved when received (#onMessage); if the disk could not take it then, tried once more now, and
    // run from memory all the same (a rollback or a drop is carried out from memory, and recorded
    // and answered once the disk takes writes; a refusal waits for the disk, taken again on a timer).
    await this.#writes;
    if (!this.#state.state.pendingCommands?.some((pending) => pending.id === command.id)) {
      await this.#save(this.#state.state).catch((error: unknown) => this.#logger.warn({ commandId: command.id, err: errorMessage(error) }, `the fleet command cannot be recorded on disk; ${UNRECORDED_COMMAND}`));
    }
    crashPoint('command:taken');
    if (command.command === 'rollback') await this.#rollback(command.id, undefined, {}, command);
    else if (command.command === 'drop-candidate') await this.#dropCandidate(command);
    // Every answer clears it (#write); this is for a command that ended without one.
    await this.#forgetCommands([command.id]);
  }

  /** Forgets fleet commands not to be carried out (given up, or ended without an answer), also on disk. */
  async #forgetCommands(ids: readonly string[]): Promise<void> {
    this.#pendingCommands = this.#pendingCommands.filter((command) => !ids.includes(command.id));
    const state = this.#state.state;
    if (state.pendingCommands?.some((command) => ids.includes(command.id))) await this.#save(state);
  }

  async #dropCandidate(command: FleetCommand): Promise<void> {
    const answers = command.id;
    // A candidate assignment issued before the drop and still pending (its download interrupted by
    // a stop, resumed at the next start) would install after it: the drop cancels it too.
    const pending = this.#state.state.pending;
    if (pending?.role === 'candidate' && Date.parse(pending.issuedAt) <= Date.parse(command.issuedAt)) await this.#refuse(pending, `cancelled by drop-candidate ${answers}`);
    const state = this.#state.state;
    // A candidate assigned after the drop was issued (the drop reached the device late, after a
    // newer rollout's assignment) is not the one it meant: the candidate it meant is gone already.
    const assignedSince = state.candidate && state.candidateIssuedAt && Date.parse(state.candidateIssuedAt) > Date.parse(command.issuedAt);
    if (!state.candidate || assignedSince) {
      if (assignedSince) this.#logger.info({ commandId: answers, candidate: state.candidate!.version, assignedBy: state.candidateAssignmentId }, 'drop-candidate not carried out: the candidate in its slot was assigned after it was issued');
      const subject = state.active ?? { model: 'none', version: 'none', sha256: '0'.repeat(64) };
      return this.#commit(withHandled(state, answers), this.#assignmentReport(answers, 'refused', 'candidate', subject, 'no candidate to drop'));
    }
    const dropped = state.candidate;
    // As a rollback: on a disk that takes no writes (full, read-only) the candidate leaves its slot
    // (and shadow serving) at once, and the drop is recorded and answered once the disk takes writes;
    // its files go at a later collection.
    const change: SlotState = { ...withHandled(state, answers), candidate: null, candidateBenchmarked: true, droppedCandidate: { sha256: dropped.sha256, issuedAt: command.issuedAt } };
    const recorded = await this.#commitOrKeepInMemory(change, this.#assignmentReport(answers, 'candidate-dropped', 'candidate', dropped, null), `drop-candidate ${answers}`);
    await this.#serving.refreshCandidate();
    this.#serving.publishModelInfo();
    if (recorded) await this.#store.collectGarbage(this.#referencedModels(this.#state.state));
    else this.#logger.warn({ version: dropped.version, commandId: answers }, 'dropped the candidate in memory: the disk takes no writes; the drop is recorded and answered once it does (a restart before then comes back on the state on disk)');
  }

  /**
   * Benchmarks the candidate next to the active model on the holdout and reports both, for the
   * assignment that put the candidate in its slot (or benchmarked it again) last.
   * `rethrowStorageFailure`: when the device's storage cannot take the report, throw (the caller's
   * assignment is taken again, and saves the benchmark first) instead of scheduling a retry.
   */
  async #benchmarkCandidate(options: { rethrowStorageFailure?: boolean } = {}): Promise<BenchmarkRun> {
    const holdout = this.#options.holdout;
    const { candidate, active, candidateAssignmentId } = this.#state.state;
    if (!holdout || !candidate) return 'not-run';
    const assignmentId = candidateAssignmentId ?? null;
    const id = reportId(this.deviceId, `${assignmentId ?? 'resumed'}:${candidate.sha256}`, 'benchmark');
    let kept = this.#unsavedBenchmark;
    if (kept && !(sameModel(kept.candidate, candidate) && sameSlot(kept.active, active) && kept.assignmentId === assignmentId)) kept = this.#unsavedBenchmark = undefined;
    let report: Report;
    let result: 'ok' | 'failed';
    // Whether this report is the verdict of the agent's deaths (not of a benchmark that ran).
    let deaths = false;
    if (kept) {
      // Measured already; only its report was not saved.
      ({ report, result, deaths } = kept);
      this.#logger.info({ candidate: candidate.version }, 'saving the benchmark report again');
    } else if (this.#benchmarkDeaths(candidate) >= BENCHMARK_DEATHS_REFUSED) {
      // The agent died in each of its last benchmarks of this candidate: not run again (it would
      // take the device down at every restart, its active model served only between them).
      const times = this.#benchmarkDeaths(candidate);
      const reason = `the agent ended ${times} times while benchmarking it (killed for memory, a crash, or a power loss): not benchmarked again`;
      this.#logger.error({ candidate: candidate.version, deaths: times }, 'benchmark failed: the agent died while benchmarking this candidate');
      report = { ...this.#assignmentReport(assignmentId ?? id, 'benchmark-failed', 'candidate', candidate, reason), failedRole: 'candidate' as const };
      result = 'failed';
      deaths = true;
    } else {
      // On disk before the candidate's part starts (the active model loaded and scored first): a
      // benchmark the agent dies in from then on counts (#benchmarkDeaths).
      let counted = false;
      const candidatePhase = async () => {
        counted = await this.#markBenchmarkStart(candidate, this.#benchmarkDeaths(candidate) + 1);
      };
      const uncount = () => (counted ? this.#markBenchmarkStart(candidate, this.#benchmarkDeaths(candidate) - 1) : Promise.resolve(false));
      this.#logger.info({ candidate: candidate.version, active: active?.version ?? null }, 'benchmark started');
      const interrupt = new AbortController();
      this.#benchmarking = { candidate, interrupt };
      const running = { model: candidate.model, version: candidate.version };
      this.metrics.benchmarkStarted.set(running, this.#deps.clock().getTime() / 1000);
      // Work that arrived while the install (or the activation) was queued or ran (a drop, a rollback,
      // a newer assignment) goes first.
      const [waiting] = this.#waitingWork;
      if (waiting !== undefined) interrupt.abort(new BenchmarkInterrupted(waiting));
      try {
        report = await benchmarkCandidate(
          { deviceId: this.deviceId, reportId: id, assignmentId, candidate, active },
          { store: this.#store, serverKey: this.#publicKey, holdout, settings: this.#options.benchmark ?? DEFAULT_BENCHMARK_SETTINGS, clock: () => this.#deps.clock() },
          AbortSignal.any([this.#abort.signal, interrupt.signal]),
          { candidatePhase },
        );
        result = 'ok';
      } catch (error) {
        if (this.#abort.signal.aborted) {
          // Stopping: nothing is reported, and the candidate stays unbenchmarked, so the next start runs it again.
          this.#logger.info({ candidate: candidate.version }, 'benchmark stopped; it runs again at the next start');
          await uncount();
          return 'stopped';
        }
        if (error instanceof BenchmarkInterrupted) {
          await uncount();
          // Not a verdict on the candidate: nothing is reported, and the benchmark is queued again
          // behind the work that interrupted it (for the candidate and assignment of then).
          this.#logger.info({ candidate: candidate.version, by: error.by }, 'benchmark interrupted; it runs again after that work');
          this.#queueBenchmarkRerun('resume interrupted benchmark');
          return 'interrupted';
        }
        // The active model's failure is the device's (its holdout, its own model), not the candidate's.
        const failedRole = error instanceof ModelBenchmarkError ? error.role : 'candidate';
        this.#logger.warn({ err: errorMessage(error), failedRole }, 'benchmark failed');
        report = { ...this.#assignmentReport(assignmentId ?? id, 'benchmark-failed', 'candidate', candidate, errorMessage(error)), failedRole };
        result = 'failed';
      } finally {
        if (this.#benchmarking?.interrupt === interrupt) this.#benchmarking = undefined;
        this.metrics.benchmarkStarted.remove(running);
      }
    }
    // Saving the report is the device's own business, not the model's: a full disk or an I/O error
    // here is never reported as the candidate's benchmark failure. The report is kept, and saved
    // again on a timer with a backoff while its candidate is still unbenchmarked.
    try {
      await this.#commit(this.#benchmarked(candidate, deaths), report);
    } catch (error) {
      if (!isSystemError(error) || this.#stopped) throw error;
      this.#unsavedBenchmark = { report, result, deaths, candidate, active, assignmentId };
      if (options.rethrowStorageFailure) throw error;
      const subject = `${candidate.sha256} ${assignmentId}`;
      if (this.#benchmarkRetryFor !== subject) this.#retries.done(BENCHMARK_RETRY);
      this.#benchmarkRetryFor = subject;
      const retryInMs = this.#retries.schedule(BENCHMARK_RETRY, () => {
        if (!this.#stopped) this.#queueBenchmarkRerun(`retry benchmark of ${candidate.version}`);
      });
      this.#logger.error({ err: describeSystemError(error), candidate: candidate.version, retryInMs }, 'benchmark report not saved (the device\'s storage failed); it is kept and saved again on a timer (measured again only if its candidate, assignment or active model changed)');
      return 'not-saved';
    }
    this.#unsavedBenchmark = undefined;
    this.#retries.done(BENCHMARK_RETRY);
    this.metrics.benchmarks.inc({ result });
    if (result === 'ok') this.#logger.info({ reportId: id }, 'benchmark finished');
    return 'reported';
  }

  /** Queues a rerun of the candidate's benchmark (#benchmarkAgain), unless one is queued already. */
  #queueBenchmarkRerun(what: string): void {
    if (this.#benchmarkRerunQueued) return;
    this.#benchmarkRerunQueued = true;
    this.#enqueue(what, async () => {
      this.#benchmarkRerunQueued = false;
      await this.#benchmarkAgain();
    });
  }

  /**
   * Runs the benchmark of the candidate again if it is still unbenchmarked (it was interrupted, or
   * its report not saved), for the candidate and assignment of now, not those of when it was
   * queued. Not while an activation of that candidate waits for it: that activation runs it.
   */
  async #benchmarkAgain(): Promise<void> {
    const { candidate, candidateBenchmarked } = this.#state.state;
    if (!candidate || candidateBenchmarked) this.#unsavedBenchmark = undefined;
    if (!candidate || candidateBenchmarked || this.#activationAwaitsBenchmark(candidate)) return this.#retries.done(BENCHMARK_RETRY);
    await this.#benchmarkCandidate();
  }

  /** Whether the newest assignment is an activation of `candidate` not answered yet: it runs the candidate's benchmark first (#processAssignment). */
  #activationAwaitsBenchmark(candidate: ModelRef): boolean {
    const latest = this.#latestAssignmentTaken;
    if (!latest || latest.role !== 'active' || !sameModel(latest, candidate)) return false;
    return !this.#state.state.handledIds.includes(latest.id) && !this.#direct.refused(latest.id);
  }

  /**
   * Why an activation is no longer to be carried out, or undefined: a rollback issued after it was
   * carried out (a rollback always wins over an activation issued before it, whichever reached the
   * device first), or a drop-candidate issued after it dropped the candidate it activates. Judged by
   * the server's issue times, kept in state.json (`rolledBackAt`, `droppedCandidate`). One whose
   * model is active already is answered as such.
   */
  #mootActivation(assignment: Assignment): string | undefined {
    const state = this.#state.state;
    const cause = mootActivationCause(state, assignment);
    if (!cause) return undefined;
    const now = `active ${state.active?.version ?? 'none'}, candidate ${state.candidate?.version ?? 'none'}`;
    if (cause === 'rollback') return `not activated: a rollback issued after it was carried out (now ${now})`;
    return `not activated: a drop-candidate issued after it dropped its model from the candidate slot (now ${now})`;
  }

  /**
   * The state with the candidate benchmarked. `deaths`: its report is the verdict of the agent's
   * deaths, which stays on record (#asWritten) so that no activation takes the candidate after a
   * restart either; a benchmark that ran to its end (ok or failed) clears the count it started with.
   */
  #benchmarked(candidate: ModelRef, deaths = false): SlotState {
    const state = this.#state.state;
    if (!sameModel(state.candidate, candidate)) return state;
    return { ...state, candidateBenchmarked: true, benchmarkStarts: deaths ? state.benchmarkStarts : undefined };
  }

  /** Benchmarks of `candidate` started and never ended (the agent died in them; see SlotState.benchmarkStarts). */
  #benchmarkDeaths(candidate: ModelRef): number {
    const starts = this.#state.state.benchmarkStarts;
    return starts?.sha256 === candidate.sha256 ? starts.unfinished : 0;
  }

  /**
   * Records `unfinished` benchmarks of the candidate (one more before a benchmark starts, one
   * fewer once it ended without a verdict: stopped, or interrupted by other work); whether it was
   * written. A disk that takes no writes leaves the count as it was: the benchmark runs all the same.
   */
  async #markBenchmarkStart(candidate: ModelRef, unfinished: number): Promise<boolean> {
    const state = this.#state.state;
    // Not once a stop has given up waiting for the work (the data dir may be another agent's by then).
    if (!sameModel(state.candidate, candidate) || this.#stopGraceOver) return false;
    try {
      await this.#save({ ...state, benchmarkStarts: unfinished > 0 ? { sha256: candidate.sha256, unfinished } : undefined });
      return true;
    } catch (error) {
      if (!isSystemError(error)) throw error;
      this.#logger.warn({ err: describeSystemError(error) }, 'could not record the benchmark start (the device\'s storage failed); benchmarking all the same');
      return false;
    }
  }

  /**
   * Answers the assignment `refused`. `routine`: it was only overtaken (superseded by a newer
   * assignment, which a reconnect's redelivery of queued ones does every time), so it logs at info
   * rather than warn.
   */
  async #refuse(assignment: Assignment, reason: string, routine = false): Promise<void> {
    const fields = { assignmentId: assignment.id, version: assignment.version, reason };
    if (routine) this.#logger.info(fields, 'assignment superseded');
    else this.#logger.warn(fields, 'assignment refused');
    const report = this.#assignmentReport(assignment.id, 'refused', assignment.role, assignment, reason);
    try {
      await this.#commit({ ...withAssignmentHandled(this.#state.state, assignment.id), pending: null }, report);
    } catch (error) {
      // The state file cannot be written (a full disk): the server must still hear of the refusal,
      // so it is sent from memory, and the next state write that succeeds records it (#save), as
      // this one would have: a stop before it got out then loses it no more, even when the assignment
      // is no longer pending by then (replaced by a newer one). Until then the assignment is taken
      // again on a timer, and at its next delivery, to record it (see #enqueueAssignment).
      this.#logger.warn({ assignmentId: assignment.id, err: errorMessage(error) }, 'the refusal cannot be recorded on disk; sending it from memory');
      // Counted once: it may be refused again before a write records it (a fleet command taken again).
      const counted = this.#direct.unrecorded().some((held) => held.id === report.id);
      this.#direct.holdUnrecorded(report);
      if (!counted) this.#countAnswers([report]);
      void this.#flushOutbox();
    }
  }

  /**
   * #refuse, for a refusal that follows from the slots (moot after a rollback or a drop, already the
   * active model). While the agent runs on a state the disk has not recorded (a rollback, a revert or
   * a drop carried out from memory), such a refusal does not go out: a restart comes back on
   * state.json, where the same assignment would be carried out, and the server must not hear both.
   * It is taken again on its timer, and answered once that state is recorded.
   */
  async #refuseFromState(assignment: Assignment, reason: string): Promise<void> {
    if (this.#inMemoryOnly) throw new Error(`refusing it (${reason}) waits until the disk records the state it follows from`);
    return this.#refuse(assignment, reason);
  }

  async #finish(assignment: Assignment, outcome: 'installed' | 'activated', reason: string): Promise<void> {
    await this.#commit({ ...withAssignmentHandled(this.#state.state, assignment.id), pending: null }, this.#assignmentReport(assignment.id, outcome, assignment.role, assignment, reason));
  }

  /** `key` tells the report's id apart from other answers to `answers` (by default its outcome). */
  #assignmentReport(answers: string, outcome: AssignmentReport['outcome'], role: Role, ref: ModelRef, reason: string | null, key = `assignment:${outcome}${restoreMark(this.#state.state, answers)}`): AssignmentReport {
    return assignmentReport(this.deviceId, this.#deps.clock(), answers, outcome, role, ref, reason, key);
  }

  /** #commit, but when the device's storage cannot take the change, it is carried out from memory (#saveOrKeepInMemory) and the result is false. */
  async #commitOrKeepInMemory(next: SlotState, report: Report, what: string, afterStateWrite?: () => void): Promise<boolean> {
    this.#heartbeatBeforeActiveChange(next);
    if (!(await this.#saveOrKeepInMemory(withInstaller({ ...next, unsentReports: [...next.unsentReports, report] }, report), what))) return false;
    afterStateWrite?.();
    await this.#moveUnsentReports();
    void this.#flushOutbox();
    return true;
  }

  /**
   * A heartbeat just before the active model changes: the server adds what a heartbeat's counters
   * grew by to the model it names active, so the rows the outgoing model served since the last
   * heartbeat are told under it, not under the model that replaces it (up to a heartbeat interval
   * of traffic, its errors included, at every activation, rollback or revert).
   */
  #heartbeatBeforeActiveChange(next: SlotState): void {
    const current = this.#state.state.active;
    if (current === null || next.active?.sha256 === current.sha256) return;
    // Built now, published without waiting: a slow or broken link must not hold the change up
    // (the client sends in call order, so it still goes ahead of the answer published after it).
    void this.#sendHeartbeat();
  }

  /**
   * Commits a state change and the report that describes it in one atomic state write, then
   * moves the report into the outbox. A crash in between leaves the report in the state file,
   * from where startup moves it; report ids are deterministic, so a repeat is deduplicated.
   */
  async #commit(next: SlotState, report: Report, afterStateWrite?: () => void): Promise<void> {
    this.#heartbeatBeforeActiveChange(next);
    await this.#save(withInstaller({ ...next, unsentReports: [...next.unsentReports, report] }, report));
    afterStateWrite?.();
    // The change and its report are on disk: the step has happened, and what follows it (serving
    // the new model) must too. Moving the report on can fail (a full disk); it then stays in the
    // state file until a later commit, heartbeat or start moves it.
    await this.#moveUnsentReports();
    void this.#flushOutbox();
  }

  /**
   * Moves the reports held in the state file into the outbox (those already sent directly are only
   * dropped from the state). Never throws (logs); runs in the work queue or at start.
   */
  async #moveUnsentReports(): Promise<void> {
    if (this.#inMemoryOnly) {
      // A state kept in memory (#saveOrKeepInMemory) is recorded first: its reports go out only then.
      try {
        await this.#save();
      } catch (error) {
        // The reports the state file holds are sent directly meanwhile; those of the state kept in memory are not (#flushOutbox).
        this.#direct.outboxRefused();
        this.#logger.warn({ err: errorMessage(error) }, 'the state kept in memory still cannot be recorded on disk; tried again at the next heartbeat');
        return;
      }
    }
    const unsent = this.#state.state.unsentReports;
    if (unsent.length === 0) return;
    try {
      for (const report of unsent) {
        if (!this.#direct.sent(report.id)) await this.#outbox.enqueue({ topic: reportsTopic(this.deviceId), payload: JSON.stringify(report) }, report.id);
      }
      const moved = new Set(unsent.map((report) => report.id));
      const current = this.#state.state;
      await this.#save({ ...current, unsentReports: current.unsentReports.filter((report) => !moved.has(report.id)) });
      this.#direct.outboxTook(moved);
    } catch (error) {
      // Enqueued twice at worst (some moved, the state not saved): report ids are deterministic, and the server drops repeats.
      this.#direct.outboxRefused();
      this.#logger.warn({ err: errorMessage(error), reports: unsent.length }, 'reports kept in the state file: the outbox cannot take them now (sent directly while connected)');
    }
  }

  /**
   * Every state write, one at a time (a fleet command is saved when received, while the work queue
   * may be writing): `next`, or without it the state as it is when its turn comes.
   */
  #save(next?: SlotState): Promise<void> {
    const write = this.#writes.then(() => this.#write(next ?? this.#state.state));
    this.#writes = write.catch(() => {});
    return write;
  }

  /**
   * `proposed` as every state write records it (to disk, or kept in memory when the disk takes no
   * writes): with the fleet commands received and not yet answered, and the newest command number taken.
   */
  #asWritten(proposed: SlotState): SlotState {
    this.#pendingCommands = this.#pendingCommands.filter((command) => !proposed.handledIds.includes(command.id));
    const commandSeq = Math.max(proposed.commandSeq ?? -1, this.#trust.newestSeq.command.seq);
    // Deaths counted for a candidate no longer in the slot (dropped, activated, replaced) are not
    // held against it if it comes again: a new rollout of it starts from none.
    // A verdict (BENCHMARK_DEATHS_REFUSED deaths, the candidate benchmarked by it: #benchmarked)
    // stays while the candidate does: it is not activated.
    const starts = proposed.benchmarkStarts;
    const benchmarkStarts = starts && proposed.candidate?.sha256 === starts.sha256 && (!proposed.candidateBenchmarked || starts.unfinished >= BENCHMARK_DEATHS_REFUSED) ? starts : undefined;
    return { ...proposed, benchmarkStarts, pendingCommands: this.#pendingCommands, ...(commandSeq >= 0 ? { commandSeq } : {}), serverKeyId: this.#serverKeyId };
  }

  /**
   * Writes `next` with the fleet commands received and not answered (those of memory, see
   * #pendingCommands: a write of the work queue computed before a command was received keeps it),
   * and the refusals that the disk could not take when they were made (a state write succeeding
   * means it can again), so that none is left only in memory.
   */
  async #write(proposed: SlotState): Promise<void> {
    const next = this.#asWritten(proposed);
    const held = this.#direct.unrecorded();
    // The answers this write commits, counted once it succeeds: every answer the agent sends enters
    // the state file here (or, a refusal the disk could not take, is held in memory: counted then,
    // and not again when a write records it).
    // (Those of a state kept in memory, #inMemoryOnly, are sent once this records them: counted then.)
    const before = new Set([...this.#state.state.unsentReports.filter((report) => !this.#inMemoryOnly?.has(report.id)), ...held].map((report) => report.id));
    const answers = next.unsentReports.filter((report) => !before.has(report.id));
    await this.#state.save(held.reduce(withRefusalRecorded, next));
    // Every write is of the state in memory (or one made from it): a state kept in memory is on disk now.
    const recordedFromMemory = this.#inMemoryOnly !== undefined;
    this.#inMemoryOnly = undefined;
    this.#recordedModels = undefined;
    if (recordedFromMemory) {
      // What waited for the disk (a refusal that followed from this state, work that failed on it) is taken again now, not at its next backoff.
      this.#retries.retryAllNow();
      // The models only the old state.json named (a candidate dropped, a model rolled back from in
      // memory) can go now. Kept, as at start: the pending assignment's (installed, but the write
      // naming it may have failed), unless it is an activation made moot meanwhile, whose model is
      // the one a drop took out of its slot.
      this.#enqueue('remove the models the recorded state no longer holds', async () => {
        const state = this.#state.state;
        const pending = state.pending && !mootActivationCause(state, state.pending) ? [state.pending.sha256] : [];
        await this.#store.collectGarbage(new Set([...this.#referencedModels(state), ...pending]));
      });
    }
    this.#direct.recorded(held.map((report) => report.id));
    this.#countAnswers(answers);
  }

  /** fleetprune_agent_assignments_total: the answers (to assignments and fleet commands) among `reports`, by outcome. */
  #countAnswers(reports: readonly Report[]): void {
    for (const report of reports) if (report.kind === 'assignment') this.metrics.assignments.inc({ outcome: report.outcome });
  }

  async #flushOutbox(): Promise<void> {
    if (!this.#link.connected) return;
    await this.#outbox.flush((topic, payload) => this.#link.publish(topic, payload)).catch((error: unknown) =>
      this.#logger.warn({ err: errorMessage(error) }, 'outbox flush failed'),
    );
    // Not those of a state kept in memory (#inMemoryOnly): sent once a state write records them.
    const unsent = this.#state.state.unsentReports.filter((report) => !this.#inMemoryOnly?.has(report.id));
    await this.#direct.send(unsent, (report) => this.#link.publish(reportsTopic(this.deviceId), Buffer.from(JSON.stringify(report))));
  }

  /** Never rejects: it runs from a timer and the connect callback, where a rejection would end the process. */
  async #sendHeartbeat(): Promise<void> {
    if (!this.#link.connected) return;
    let telemetry: Telemetry;
    try {
      // Taken: in this run (trust) or an earlier one (the state file).
      const seq = Math.max(this.#trust.newestSeq.assignment.seq, this.#state.state.assignmentSeq ?? -1);
      telemetry = this.#heartbeat.build(this.slots, { ...this.#servingStats }, seq >= 0 ? seq : undefined);
    } catch (error) {
      this.#logger.warn({ err: errorMessage(error) }, 'heartbeat not sent');
      return;
    }
    await this.#link.publish(telemetryTopic(this.deviceId), Buffer.from(JSON.stringify(telemetry))).catch(() => {});
  }

  /** The models `state` holds and, while the agent runs on a state kept in memory, those state.json names. */
  #referencedModels(state: SlotState): Set<string> {
    // After a corrupt state file, the models on disk then stay until an active model is set again:
    // one of them is the model the device served, which the server can then restore from disk.
    // Removed by the first install after the start, it was gone, and so was what the device served.
    if (state.active) this.#keptFromCorruptState = null;
    return new Set([...modelsOf(state), ...(this.#recordedModels ?? []), ...(this.#keptFromCorruptState ?? [])]);
  }
}

/** The artifact ids of the models `state` holds (active, candidate, previous). */
function modelsOf(state: SlotState): Set<string> {
  return new Set([state.active, state.candidate, state.previous].filter((ref) => ref !== null).map((ref) => ref.sha256));
}

/** Whether `assignment` makes the device's previous model active again: a revert, with no download. */
function isRevert(state: SlotState, assignment: Assignment): boolean {
  return assignment.role === 'active' && !sameModel(state.active, assignment) && sameModel(state.previous, assignment);
}

/** What becomes of a fleet command the disk could not record when it came (the end of a log line). */
const UNRECORDED_COMMAND = 'carrying it out from memory';
