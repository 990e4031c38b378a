import { randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, realpath, rm } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { canonicalText, columnKey } from '../../shared/util/canonical-text.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError, asServiceError } from '../app/service-error.ts';
import { isStorageFailureCode } from '../app/storage-codes.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';
import { storeArtifactFiles } from '../artifacts/store-artifact-files.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import type { JobRecord, JobState } from '../store/repositories/jobs-repository.ts';
import type { Store } from '../store/store.ts';
import { JobEvents, type JobEvent } from './job-events.ts';
import { isFinished, watchJob } from './job-watch.ts';
import { newActiveJob, type ActiveJob, type JobCancel } from './active-job.ts';
import { nodeLockFor, type NodeLock } from './node-lock.ts';
import { readJobData } from './job-data.ts';
import { JobDataCheckPool, type JobDataCheckPoolOptions } from './job-data-check-pool.ts';
import { verifiedJobArtifacts } from './job-artifacts.ts';
import { jobOutputBytes, prepareWorkSpace, withoutServerPaths } from './job-work-space.ts';
import { REST_PRUNE_FIELDS, type PruneJobRequest, type PruneRequestFields } from './prune-job-request.ts';
import type { PruneWorkerInput, PruneWorkerMessage } from './prune-worker-protocol.ts';

/** How a job ends. */
type FinalJobState = 'succeeded' | 'failed' | 'cancelled';

export const RESTART_REASON = 'server restarted before the job finished';
export const SHUTDOWN_REASON = 'server shut down before the job finished';
const WORKER_ENTRY = new URL('./prune-worker-entry.mjs', import.meta.url);
const PROGRESS_PERSIST_INTERVAL_MS = 500;
/** How often a server renews the leases of its unfinished jobs (PostgreSQL). */
export const JOB_LEASE_RENEW_MS = 15_000;
/** A job whose lease is this old has lost its server: another server fails it. */
export const JOB_LEASE_STALE_S = 90;
/** How often a job's end that the store refused (a full disk, a lost connection) is tried again. */
const END_RETRY_MS = 1000;

export interface JobServiceDeps {
  store: Store;
  registry: RegistryService;
  blobs: BlobStore;
  signingKey: KeyObject;
  signingPublicKey: KeyObject;
  /** Where this server's jobs write their outputs (its own: cleared when it starts). */
  workDir: string;
  /** --data-dir (workDir is in it): a job's error names paths in it relative to it, not the server's path. */
  dataDir?: string;
  /** This server (--node-id): the owner of the jobs it accepts. */
  node: string;
  dataRoot: string | undefined;
  maxDataBytes: number;
  maxConcurrentJobs: number;
  /** Jobs waiting for a worker; a submission beyond is refused (each holds its data set in memory). */
  maxQueuedJobs: number;
  metrics: ServerMetrics;
  log: Logger;
  /** How often a watcher here re-reads a job another server runs (default REMOTE_WATCH_POLL_MS). */
  watchPollMs?: number;
  /** Lease renewal period and staleness (defaults JOB_LEASE_RENEW_MS, JOB_LEASE_STALE_S); tests shorten them. */
  leaseRenewMs?: number;
  leaseStaleSeconds?: number;
  /** The worker threads checking submitted data sets (default: DATA_CHECK_THREADS, ended when idle). */
  dataChecks?: JobDataCheckPoolOptions;
}

type JobInterface = QueuedJob['interface'];

/** Whether two jobs' versions could be registered under one name (RegistryService.checkSameInterface's terms). */
function sameInterface(a: JobInterface, b: JobInterface): boolean {
  const same = (x: readonly string[], y: readonly string[], key: (name: string) => string) => x.length === y.length && x.every((name, i) => key(name) === key(y[i]!));
  return a.task === b.task && same(a.features, b.features, columnKey) && same(a.labels, b.labels, canonicalText);
}

interface QueuedJob {
  id: string;
  input: PruneWorkerInput;
  actor: string;
  /** What its versions will take and give: checked against the registry again when it leaves the queue. */
  interface: { task: 'classification' | 'regression'; features: string[]; labels: string[] };
}

/**
 * Pruning jobs: validated and persisted on submission, run one ODF2NNA per worker thread (at most
 * maxConcurrentJobs at once), their outputs verified, stored as blobs and registered (general
 * model, then the pruned model whose parent it is) in one transaction.
 */
export class JobService {
  readonly events = new JobEvents();
  readonly #deps: JobServiceDeps;
  readonly #dataChecks: JobDataCheckPool;
  readonly #nodeLock: NodeLock;
  readonly #queue: QueuedJob[] = [];
  readonly #active = new Map<string, ActiveJob>();
  /**
   * The jobs holding one of the maxConcurrentJobs slots: taken synchronously when a job leaves the
   * queue (a pump during the awaits before its worker starts must see the slot taken), given back
   * once its end is stored and its worker has exited (a job registering its models still runs).
   * By id, with the job (its model name and interface, which #pump keeps apart).
   */
  readonly #slots = new Map<string, QueuedJob>();
  /** Submissions past their last queue check whose job is being stored: each holds a place in the queue. */
  #admitting = 0;
  #stopping = false;
  #leaseTimer: NodeJS.Timeout | undefined;
  #leaseFailureLogged = false;

  constructor(deps: JobServiceDeps) {
    this.#deps = deps;
    this.#dataChecks = new JobDataCheckPool({ maxWaiting: deps.maxQueuedJobs, ...deps.dataChecks });
    this.#nodeLock = nodeLockFor(deps.store.engine, deps.node, deps.log);
  }

  get running(): number {
    return this.#slots.size;
  }

  /**
   * Fails what a previous process left unfinished and clears its work directories. With SQLite
   * this server is the only one on its database, so it also fails the jobs of any other node id
   * (this server before a host rename or another --node-id): no other server will ever end them.
   * With PostgreSQL another node id may be a live server sharing the database (and nothing here
   * tells a live one from a gone one), so its jobs are left to it.
   *
   * First it claims this node id for as long as it runs (NodeLock): a second server started with
   * the same --node-id is refused (a UserError) before it fails or deletes anything of the live one.
   */
  async recoverInterrupted(): Promise<string[]> {
    const { store, node } = this.#deps;
    await this.#nodeLock.acquire();
    const at = new Date().toISOString();
    const failed = await store.jobs.failUnfinished(RESTART_REASON, at, node);
    if (store.engine.dialect === 'sqlite') {
      for (const other of await store.jobs.nodesWithUnfinished()) {
        failed.push(...(await store.jobs.failUnfinished(`${RESTART_REASON} (it ran as node ${other}; the server is now node ${node})`, at, other)));
      }
    }
    if (failed.length > 0) this.#deps.metrics.jobsFinished.inc({ state: 'failed' }, failed.length);
    await rm(this.#deps.workDir, { recursive: true, force: true });
    await mkdir(this.#deps.workDir, { recursive: true });
    if (failed.length > 0) this.#deps.log.warn({ jobs: failed }, RESTART_REASON);
    return failed;
  }

  /**
   * With PostgreSQL, several servers share the jobs table and none can tell from its rows whether
   * another is alive. So each renews the leases of its unfinished jobs every leaseRenewMs, and
   * fails the unfinished jobs of any other server whose leases are older than leaseStaleSeconds
   * (by the database's clock): that server was decommissioned, crashed for good or is cut off,
   * and nothing else would ever end its jobs (they would stay running, `jobs watch` would never
   * return, and the cancel would point at a server that is not there). A server cut off that long
   * that comes back finds its job failed and registers nothing.
   */
  startLeases(): void {
    if (this.#deps.store.engine.dialect !== 'postgres' || this.#leaseTimer) return;
    this.#leaseTimer = setInterval(() => void this.#renewAndReap(), this.#deps.leaseRenewMs ?? JOB_LEASE_RENEW_MS);
    this.#leaseTimer.unref();
  }

  async #renewAndReap(): Promise<void> {
    const { store, node, log } = this.#deps;
    const staleSeconds = this.#deps.leaseStaleSeconds ?? JOB_LEASE_STALE_S;
    try {
      await store.jobs.renewLeases(node);
      const failed = await store.jobs.failAbandoned(
        (owner) => `its server (node ${owner}) stopped renewing the job for over ${staleSeconds} s and is presumed gone; failed by node ${node}`,
        new Date().toISOString(),
        node,
        staleSeconds,
      );
      if (failed.length > 0) this.#deps.metrics.jobsFinished.inc({ state: 'failed' }, failed.length);
      for (const { id, node: owner } of failed) {
        log.warn({ job: id, node: owner }, 'failed a job whose server stopped renewing it');
        const job = await store.jobs.get(id);
        if (job) this.events.emit({ type: 'state', jobId: id, job });
      }
      this.#leaseFailureLogged = false;
    } catch (error) {
      if (!this.#leaseFailureLogged) log.warn({ err: errorMessage(error) }, 'cannot renew job leases (retrying)');
      this.#leaseFailureLogged = true;
    }
  }

  /**
   * Starts a pruning job; `fields` names the request's fields in errors (REST's by default).
   * `givenOptions` names the options the caller gave, as `request.options` holds the defaults too:
   * one that the data's task ignores (an accuracy tolerance for regression data) is refused.
   */
  async startPrune(request: PruneJobRequest, principal: Principal, fields: PruneRequestFields = REST_PRUNE_FIELDS, givenOptions: readonly string[] = []): Promise<JobRecord> {
    this.#assertRoomInQueue();
    // The task may come as the request's or as an option (both are in the schema): either is heeded.
    const optionsTask = request.options?.task;
    if (request.task !== undefined && optionsTask !== undefined && optionsTask !== request.task) {
      throw new ServiceError('bad_request', `${fields.options}.task: ${optionsTask} contradicts the request's task ${request.task}; give one`);
    }
    const { text, source } = await readJobData(request.data, this.#deps.dataRoot, this.#deps.maxDataBytes, fields);
    // Parsed, its options validated and split here too, so bad data (too few rows for the splits
    // included) is a 400 now rather than a failed job later: in a worker thread, as parsing up to
    // the body limit would stall every other request for seconds.
    const { task, options, features, labels } = await this.#dataChecks.check({
      csvText: text,
      source,
      label: request.label,
      task: request.task ?? optionsTask,
      options: request.options,
      optionsField: fields.options,
      givenOptions,
    });
    // Its versions would be refused at the end (RegistryService.checkSameInterface): refused before training.
    await this.#deps.registry.checkSameInterface(request.name, { task, features, labels });
    const id = `job-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const now = new Date().toISOString();
    const job: JobRecord = {
      id,
      kind: 'prune',
      state: 'queued',
      request: { name: request.name, label: request.label, task, data: 'csv' in request.data ? { csv: `${text.length} characters` } : request.data, options },
      progress: null,
      result: null,
      error: null,
      createdAt: now,
      updatedAt: now,
      createdBy: actorOf(principal),
      node: this.#deps.node,
    };
    this.#assertRoomInQueue(); // again: other submissions may have queued while this one was checked
    // Its place is held while the job is stored: submissions checked meanwhile count it as queued.
    this.#admitting++;
    try {
      await this.#deps.store.transaction(async (tx) => {
        await tx.jobs.insert(job);
        await tx.audit.append({ at: now, actor: job.createdBy, action: 'job.start', target: `job:${id}`, details: { kind: 'prune', model: request.name } });
      });
    } finally {
      this.#admitting--;
    }
    this.#queue.push({
      id,
      actor: job.createdBy,
      interface: { task, features, labels },
      input: {
        csvText: text,
        source,
        label: request.label,
        task,
        taskGiven: (request.task ?? optionsTask) !== undefined,
        options,
        outDir: join(this.#deps.workDir, id, 'artifact'),
        outputBytes: jobOutputBytes(options, features.length),
        name: request.name,
        privateKeyPem: this.#deps.signingKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      },
    });
    this.#pump();
    return job;
  }

  async get(id: string): Promise<JobRecord> {
    const job = await this.#deps.store.jobs.get(id);
    if (!job) throw new ServiceError('not_found', `no job ${id}`);
    return job;
  }

  /** The newest jobs: at most `limit` after skipping the `offset` newest. */
  list(limit?: number, offset?: number): Promise<JobRecord[]> {
    return this.#deps.store.jobs.list(limit, offset);
  }

  count(): Promise<number> {
    return this.#deps.store.jobs.count();
  }

  /**
   * Calls `listener` with the job's current state, then every change until the job finishes
   * (then `onEnd`), on whichever server it runs. Returns the unsubscribe function.
   */
  watch(id: string, listener: (event: JobEvent) => void, onEnd: () => void): Promise<() => void> {
    return watchJob({ events: this.events, get: (jobId) => this.get(jobId), node: this.#deps.node, pollMs: this.#deps.watchPollMs }, id, listener, onEnd);
  }

  /**
   * Cancels a queued or running job: a queued one never starts, a running one's worker is
   * terminated. Either way the job ends `cancelled` (not `failed`: an operator's decision is no
   * fault), its error "cancelled by <actor>", nothing is registered, and the cancellation is
   * audited with that end, in one transaction. A job whose end is already
   * decided (its models being registered, its failure being recorded) or reached cannot be
   * cancelled (conflict): the answer never claims a cancel that did not happen.
   */
  async cancel(id: string, principal: Principal): Promise<JobRecord> {
    const job = await this.get(id);
    if (isFinished(job.state)) throw new ServiceError('conflict', `job ${id} already ${job.state}; nothing to cancel`);
    if (job.node !== null && job.node !== this.#deps.node) {
      throw new ServiceError(
        'unavailable',
        `job ${id} runs on server ${job.node}; send the cancel there (this is ${this.#deps.node}). If that server is gone, its jobs fail on their own once unrenewed for ${this.#deps.leaseStaleSeconds ?? JOB_LEASE_STALE_S} s`,
      );
    }
    if (this.#stopping) throw new ServiceError('unavailable', `server ${this.#deps.node} is shutting down; its jobs end failed ("${SHUTDOWN_REASON}")`);
    const actor = actorOf(principal);
    const cancel: JobCancel = { actor, message: `cancelled by ${actor}`, state: job.state };
    // No await from here until the job is marked or dequeued: its run cannot move on in between.
    const active = this.#active.get(id);
    if (active) {
      if (active.ending) throw new ServiceError('conflict', `job ${id} is already finishing; too late to cancel`);
      active.cancel ??= cancel; // a second cancel meanwhile waits for the first
      void active.worker?.terminate();
      await active.ended;
      return this.get(id);
    }
    // Queued here, or stored but not queued yet (its submission is finishing): it never starts.
    const queued = this.#queue.findIndex((entry) => entry.id === id);
    if (queued >= 0) this.#queue.splice(queued, 1);
    if (!(await this.#end(id, ['queued', 'running'], { state: 'cancelled', error: cancel.message }, cancel))) {
      throw new ServiceError('conflict', `job ${id} already ${(await this.get(id)).state}; nothing to cancel`);
    }
    // As a running job's cancel is logged (its run says so when its worker ends).
    this.#deps.log.info({ job: id }, `${cancel.message} before it started`);
    return this.get(id);
  }

  /**
   * Terminates running workers; their jobs are marked failed (SHUTDOWN_REASON: no one cancelled
   * them, and they did not finish). A job already registering its
   * models finishes that first and ends succeeded: failing it would leave its versions registered
   * by a job that says it failed.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#leaseTimer);
    this.#queue.length = 0;
    const running = [...this.#active.entries()];
    const active = running.map(([, run]) => run);
    await Promise.all([this.#dataChecks.stop(), ...active.map((run) => run.worker?.terminate())]);
    await Promise.all(active.filter((run) => run.ending).map((run) => run.ended));
    // Only with the node's claim: without it (this start was refused, or another server took the
    // node id meanwhile) the unfinished jobs of this node id are another live server's.
    if (await this.#nodeLock.held()) {
      // The progress its watchers last saw is the one stored (its writes are throttled), as #end stores it.
      for (const [id, run] of running) {
        await run.progressWrites;
        // Only while still running: a job that registered meanwhile keeps what #end stored.
        if (run.progress) await this.#deps.store.jobs.update(id, { progress: run.progress }, new Date().toISOString(), ['running']).catch(() => {});
      }
      const failed = await this.#deps.store.jobs.failUnfinished(SHUTDOWN_REASON, new Date().toISOString(), this.#deps.node).catch(() => [] as string[]);
      // Their watchers (REST and gRPC) hear the end before the listeners close, as for a job that ends otherwise.
      for (const id of failed) {
        const job = await this.#deps.store.jobs.get(id).catch(() => undefined);
        if (job) this.events.emit({ type: 'state', jobId: id, job });
      }
    }
    await this.#nodeLock.release();
  }

  #assertRoomInQueue(): void {
    // Jobs being stored take a free worker when they are queued; the others will wait.
    const freeWorkers = Math.max(0, this.#deps.maxConcurrentJobs - this.#slots.size);
    const waiting = this.#queue.length + Math.max(0, this.#admitting - freeWorkers);
    if (waiting >= this.#deps.maxQueuedJobs) {
      throw new ServiceError('too_many_requests', `${waiting} pruning job${waiting === 1 ? ' is' : 's are'} already waiting for a worker (--max-queued-jobs); try again when one has started`);
    }
  }

  #pump(): void {
    while (!this.#stopping && this.#slots.size < this.#deps.maxConcurrentJobs && this.#queue.length > 0) {
      // Not beside a running job of the same model name with other features, labels or task: it
      // waits for that one to register, and then fails its registry check before training (#run).
      // First come first served per name: nor beside an older queued job of that name with other
      // features, which would otherwise wait for ever behind later ones sharing the running job's.
      const at = this.#queue.findIndex(
        (queued, index) =>
          ![...this.#slots.values(), ...this.#queue.slice(0, index)].some((other) => other.input.name === queued.input.name && !sameInterface(other.interface, queued.interface)),
      );
      if (at < 0) return;
      const [next] = this.#queue.splice(at, 1) as [QueuedJob];
      this.#slots.set(next.id, next);
      const active = newActiveJob();
      this.#active.set(next.id, active);
      active.ended = this.#run(next, active);
    }
  }

  async #run(job: QueuedJob, active: ActiveJob): Promise<void> {
    try {
      // Not queued any more: cancelled between its submission being stored and queued.
      if (!(await this.#transition(job.id, ['queued'], { state: 'running' }))) return;
      if (this.#stopping) return;
      // Checked at submission against the registry as it was; a job registered under the same
      // name while this one waited (two submitted at once, with other data) is refused now, not
      // after a whole training (the registration would refuse it then).
      await this.#deps.registry.checkSameInterface(job.input.name, job.interface);
      // A full or unwritable --data-dir fails the job now, not after its training.
      await prepareWorkSpace(join(this.#deps.workDir, job.id), job.input.outputBytes, this.#deps.blobs.root);
      // Cancelled while starting: checked after the last await before the worker exists. A cancel
      // meanwhile found no worker to terminate, and waited for a whole training otherwise.
      if (active.cancel) throw new Error(active.cancel.message);
      // Stopping meanwhile: stop() found no worker to end, and failed the job already; none is started.
      if (this.#stopping) return;
      await this.#runWorker(job, active);
      // Registered and ended in one transaction (#register), even if the server is stopping
      // meanwhile (stop waits for this): its watchers hear it, and it is counted.
      this.#deps.metrics.jobsFinished.inc({ state: 'succeeded' });
      const ended = await this.#deps.store.jobs.get(job.id).catch(() => undefined);
      if (ended) this.events.emit({ type: 'state', jobId: job.id, job: ended });
    } catch (error) {
      active.ending = true;
      if (this.#stopping) return;
      const cancelled = active.cancel;
      // A storage that could not take the job's models (ENOSPC, EROFS while registering them) is
      // said as a push that meets it is, with what to do; it was "internal error: ENOSPC ...".
      // The worker's too (writing the artifacts under the job's directory): a fault carries the system error's code.
      const known = asServiceError(error);
      const full = cancelled?.message ?? (known ? known.message : `internal error: ${errorMessage(error)}`);
      // API callers do not see the server's paths (the job's error is a viewer's to read): the log has them.
      const message = await this.#withoutServerPaths(full);
      if (cancelled) this.#deps.log.info({ job: job.id }, message);
      else if (!known && error instanceof PruneWorkerFault) this.#deps.log.error({ job: job.id, error: error.message, stack: error.workerStack }, 'pruning job failed');
      else if (!known) this.#deps.log.error({ err: error, job: job.id }, 'pruning job failed');
      else if (!(error instanceof ServiceError)) this.#deps.log.warn({ job: job.id, error: errorMessage(error), ...(error instanceof PruneWorkerFault ? { stack: error.workerStack } : {}) }, 'pruning job failed');
      else if (message !== full) this.#deps.log.warn({ job: job.id, error: full }, 'pruning job failed');
      // From queued too: storing its start may be what failed. A cancel that took effect (it
      // terminated the worker, or stopped the job before it started or before registering) ends
      // it cancelled, whatever the worker's exit then looked like; anything else is a failure.
      await this.#endRetrying(job.id, ['queued', 'running'], { state: cancelled ? 'cancelled' : 'failed', error: message }, cancelled, active).catch((persistError) =>
        this.#deps.log.error({ err: persistError, job: job.id }, 'cannot record the job end'),
      );
    } finally {
      this.#active.delete(job.id);
      await rm(join(this.#deps.workDir, job.id), { recursive: true, force: true }).catch(() => {});
      // The slot is free only once the worker thread is gone too (it was terminated by now).
      await active.exited;
      this.#slots.delete(job.id);
      this.#pump();
    }
  }

  /** A job's error without the server's directories (--data-dir, and the real path it leads to; --data-root). */
  async #withoutServerPaths(message: string): Promise<string> {
    const [dataDir, dataRoot] = [this.#deps.dataDir, this.#deps.dataRoot].map((path) => (path ? resolve(path) : undefined));
    const workDir = resolve(this.#deps.workDir);
    const real = async (path: string | undefined) => (path ? await realpath(path).catch(() => undefined) : undefined);
    // Without dataDir (it is where workDir is): the jobs' directory itself.
    const jobsShown = dataDir ? `<--data-dir>/${relative(dataDir, workDir)}` : "<the server's job directory>";
    return withoutServerPaths(message, [
      [dataDir, '<--data-dir>'],
      [await real(dataDir), '<--data-dir>'],
      [workDir, jobsShown],
      [await real(workDir), jobsShown],
      [dataRoot, '<--data-root>'],
      [await real(dataRoot), '<--data-root>'],
    ]);
  }

  #runWorker(job: QueuedJob, active: ActiveJob): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(WORKER_ENTRY, { workerData: job.input, execArgv: [] });
      active.worker = worker;
      active.exited = new Promise((exited) => worker.once('exit', () => exited()));
      let lastPersist = 0;
      let lastPhase = '';
      let settled = false;
      const finish = (work: () => Promise<Record<string, unknown>>) => {
        if (settled) return;
        settled = true;
        work().then(resolve, reject);
      };
      worker.on('message', (message: PruneWorkerMessage) => {
        if (message.type === 'progress') {
          this.events.emit({ type: 'progress', jobId: job.id, progress: message.event });
          active.progress = message.event;
          const now = Date.now();
          if (message.event.phase !== lastPhase || now - lastPersist > PROGRESS_PERSIST_INTERVAL_MS) {
            lastPersist = now;
            lastPhase = message.event.phase;
            // Chained, so an older write never lands after a newer one (or after the job's end).
            const progress = message.event;
            active.progressWrites = active.progressWrites.then(() => this.#deps.store.jobs.update(job.id, { progress }, new Date().toISOString(), ['running'])).catch(() => {});
          }
        } else if (message.type === 'error') {
          // The job's data or options (a UserError in the worker) versus a fault of ours, or of the
          // server's storage (its artifacts could not be written: said as asServiceError says it).
          const failure =
            message.userError && !isStorageFailureCode(message.code) ? new ServiceError('bad_request', message.message) : new PruneWorkerFault(message.message, message.stack, message.code);
          finish(() => Promise.reject(failure));
          void worker.terminate();
        } else {
          finish(() => this.#register(job, message, active));
          void worker.terminate();
        }
      });
      worker.on('error', (error) => finish(() => Promise.reject(error)));
      worker.on('exit', (code) => {
        finish(() => Promise.reject(new Error(this.#stopping ? SHUTDOWN_REASON : `the pruning worker exited (code ${code}) without a result`)));
      });
    });
  }

  async #register(job: QueuedJob, done: Extract<PruneWorkerMessage, { type: 'done' }>, active: ActiveJob): Promise<Record<string, unknown>> {
    const artifacts = await verifiedJobArtifacts(job.input.outDir, done, this.#deps.signingPublicKey);
    for (const { dir, manifest } of [artifacts.general, artifacts.pruned]) await storeArtifactFiles(dir, manifest, this.#deps.blobs);
    // The last moment a cancel or a shutdown wins (its blobs stay unreferenced, for the blob sweep);
    // from here on the models are registered, a cancel is refused and a shutdown waits.
    if (active.cancel) throw new Error(active.cancel.message);
    if (this.#stopping) throw new Error(SHUTDOWN_REASON);
    active.ending = true;
    const actor = job.actor;
    await active.progressWrites;
    // The models and the job's end in one transaction: a crash between them left the job failed
    // ("server restarted") with its models registered.
    return this.#deps.store.transaction(async (tx) => {
      // Another server may have failed it as abandoned while this one was cut off from the database.
      if (!(await tx.jobs.renewIfRunning(job.id, this.#deps.node))) {
        throw new ServiceError('conflict', `job ${job.id} is no longer running here (${(await tx.jobs.get(job.id))?.error ?? 'ended meanwhile'}); nothing registered`);
      }
      const general = await this.#deps.registry.registerIn(tx, { model: job.input.name, manifest: artifacts.general.manifest, actor });
      const pruned = await this.#deps.registry.registerIn(tx, { model: job.input.name, manifest: artifacts.pruned.manifest, actor });
      const result = {
        general: { model: general.model, version: general.version, artifactId: general.artifactId },
        pruned: { model: pruned.model, version: pruned.version, artifactId: pruned.artifactId },
        summary: done.summary,
      };
      const changes = { state: 'succeeded' as const, result, ...(active.progress ? { progress: active.progress } : {}) };
      if (!(await tx.jobs.update(job.id, changes, new Date().toISOString(), ['running']))) throw new ServiceError('conflict', `job ${job.id} ended meanwhile; nothing registered`);
      return result;
    });
  }

  /**
   * Moves the job to `changes.state` if it is still in one of `from` (false when it is not: a
   * cancel or the run itself got there first), then tells its watchers.
   */
  async #transition(id: string, from: readonly JobState[], changes: { state: JobState; result?: unknown; error?: string; progress?: unknown }, cancel?: JobCancel): Promise<boolean> {
    const at = new Date().toISOString();
    const changed = await this.#deps.store.transaction(async (tx) => {
      if (!(await tx.jobs.update(id, changes, at, from))) return false;
      if (cancel) await tx.audit.append({ at, actor: cancel.actor, action: 'job.cancel', target: `job:${id}`, details: { state: cancel.state } });
      return true;
    });
    // Not changed: another server may have ended it meanwhile (its lease reaper, while this one
    // was cut off from the database). Its watchers here hear only this server's events: they are
    // told the end as stored.
    const job = await this.#deps.store.jobs.get(id).catch(() => undefined);
    if (job && (changed || isFinished(job.state))) this.events.emit({ type: 'state', jobId: id, job });
    return changed;
  }

  /**
   * #end, tried again while the store refuses the write (a full disk, a lost database connection)
   * until it lands or the server stops: an end not stored left the job running for ever (its
   * watchers waiting, its lease renewed, a later cancel recording a false reason). Its watchers
   * here are told the end at once; the job keeps its slot, and a cancel meanwhile is refused.
   */
  async #endRetrying(id: string, from: readonly JobState[], changes: { state: FinalJobState; result?: unknown; error?: string }, cancel?: JobCancel, active?: ActiveJob): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#end(id, from, changes, cancel, active);
      } catch (error) {
        if (this.#stopping) throw error;
        if (attempt === 1) {
          this.#deps.log.error({ err: error, job: id, state: changes.state }, 'cannot record the job end (retrying)');
          const stored = await this.#deps.store.jobs.get(id).catch(() => undefined);
          const job = stored ? { ...stored, ...changes, ...(active?.progress ? { progress: active.progress } : {}), updatedAt: new Date().toISOString() } : undefined;
          if (job) this.events.emit({ type: 'state', jobId: id, job: { ...job, result: job.result ?? null, error: job.error ?? null } });
        }
        await new Promise((resolve) => setTimeout(resolve, END_RETRY_MS));
        if (this.#stopping) throw error;
      }
    }
  }

  /**
   * Ends the job (with its latest progress, the throttled saves may have skipped it) and counts it
   * in fleetprune_jobs_finished_total{state}: succeeded, failed or cancelled.
   */
  async #end(id: string, from: readonly JobState[], changes: { state: FinalJobState; result?: unknown; error?: string }, cancel?: JobCancel, active?: ActiveJob): Promise<boolean> {
    await active?.progressWrites;
    const ended = await this.#transition(id, from, { ...changes, ...(active?.progress ? { progress: active.progress } : {}) }, cancel);
    if (ended) this.#deps.metrics.jobsFinished.inc({ state: changes.state });
    return ended;
  }
}

/** A pruning worker's own failure (not the job's data): logged with the worker's stack. */
class PruneWorkerFault extends Error {
  constructor(
    message: string,
    readonly workerStack: string | undefined,
    /** The system error's code, if it was one (asServiceError reads ENOSPC or EROFS from it). */
    readonly code?: string,
  ) {
    super(message);
  }
}

