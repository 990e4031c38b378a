import { randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseDataset } from '../../shared/data/dataset.ts';
import { splitDataset } from '../../shared/data/split.ts';
import { PruneOptionsSchema } from '../pruning/options.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';
import { storeArtifactFiles } from '../artifacts/store-artifact-files.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import type { JobRecord, JobState } from '../store/repositories/jobs-repository.ts';
import type { Store } from '../store/store.ts';
import { JobEvents, type JobEvent } from './job-events.ts';
import { readJobData } from './job-data.ts';
import { verifiedJobArtifacts } from './job-artifacts.ts';
import { REST_PRUNE_FIELDS, type PruneJobRequest, type PruneRequestFields } from './prune-job-request.ts';
import type { PruneWorkerInput, PruneWorkerMessage } from './prune-worker-protocol.ts';

export const RESTART_REASON = 'server restarted while the job was running';
export const SHUTDOWN_REASON = 'server shut down while the job was running';
const WORKER_ENTRY = new URL('./prune-worker-entry.mjs', import.meta.url);
const PROGRESS_PERSIST_INTERVAL_MS = 500;

export interface JobServiceDeps {
  store: Store;
  registry: RegistryService;
  blobs: BlobStore;
  signingKey: KeyObject;
  signingPublicKey: KeyObject;
  /** Where this server's jobs write their outputs (its own: cleared when it starts). */
  workDir: string;
  /** This server (--node-id): the owner of the jobs it accepts. */
  node: string;
  dataRoot: string | undefined;
  maxDataBytes: number;
  maxConcurrentJobs: number;
  /** Jobs waiting for a worker; a submission beyond is refused (each holds its data set in memory). */
  maxQueuedJobs: number;
  metrics: ServerMetrics;
  log: Logger;
}

interface QueuedJob {
  id: string;
  input: PruneWorkerInput;
  actor: string;
}

/**
 * Pruning jobs: validated and persisted on submission, run one ODF2NNA per worker thread (at most
 * maxConcurrentJobs at once), their outputs verified, stored as blobs and registered (general
 * model, then the pruned model whose parent it is) in one transaction.
 */
export class JobService {
  readonly events = new JobEvents();
  readonly #deps: JobServiceDeps;
  readonly #queue: QueuedJob[] = [];
  readonly #workers = new Map<string, Worker>();
  /** Running jobs an operator cancelled: id → the failure message to record. */
  readonly #cancelled = new Map<string, string>();
  #stopping = false;

  constructor(deps: JobServiceDeps) {
    this.#deps = deps;
  }

  get running(): number {
    return this.#workers.size;
  }

  /** Fails what a previous process left unfinished and clears its work directories. */
  async recoverInterrupted(): Promise<string[]> {
    const failed = await this.#deps.store.jobs.failUnfinished(RESTART_REASON, new Date().toISOString(), this.#deps.node);
    await rm(this.#deps.workDir, { recursive: true, force: true });
    await mkdir(this.#deps.workDir, { recursive: true });
    if (failed.length > 0) this.#deps.log.warn({ jobs: failed }, RESTART_REASON);
    return failed;
  }

  /** Starts a pruning job; `fields` names the request's fields in errors (REST's by default). */
  async startPrune(request: PruneJobRequest, principal: Principal, fields: PruneRequestFields = REST_PRUNE_FIELDS): Promise<JobRecord> {
    this.#assertRoomInQueue();
    const { text, source } = await readJobData(request.data, this.#deps.dataRoot, this.#deps.maxDataBytes, fields);
    // Parsed here too, so bad data is a 400 now rather than a failed job later.
    const dataset = parseDataset(text, { label: request.label, task: request.task }, source);
    const options = PruneOptionsSchema.safeParse({ ...(request.options ?? {}), task: dataset.task });
    if (!options.success) throw new ServiceError('bad_request', describeIssues(options.error, fields.options));
    // Too few rows for the splits is also the request's fault: refuse it now, not as a failed job.
    splitDataset(dataset, options.data.seed, { validation: options.data.validationFraction, test: options.data.testFraction });
    const id = `job-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const now = new Date().toISOString();
    const job: JobRecord = {
      id,
      kind: 'prune',
      state: 'queued',
      request: { name: request.name, label: request.label, task: dataset.task, data: 'csv' in request.data ? { csv: `${text.length} characters` } : request.data, options: options.data },
      progress: null,
      result: null,
      error: null,
      createdAt: now,
      updatedAt: now,
      createdBy: actorOf(principal),
      node: this.#deps.node,
    };
    this.#assertRoomInQueue(); // again: other submissions may have queued while this one was checked
    await this.#deps.store.transaction(async (tx) => {
      await tx.jobs.insert(job);
      await tx.audit.append({ at: now, actor: job.createdBy, action: 'job.start', target: `job:${id}`, details: { kind: 'prune', model: request.name } });
    });
    this.#queue.push({
      id,
      actor: job.createdBy,
      input: {
        csvText: text,
        source,
        label: request.label,
        task: dataset.task,
        options: options.data,
        outDir: join(this.#deps.workDir, id, 'artifact'),
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

  list(limit?: number): Promise<JobRecord[]> {
    return this.#deps.store.jobs.list(limit);
  }

  /**
   * Calls `listener` with the job's current state, then every live event until the job
   * finishes (then `onEnd`). Returns the unsubscribe function.
   */
  async watch(id: string, listener: (event: JobEvent) => void, onEnd: () => void): Promise<() => void> {
    const pending: JobEvent[] = [];
    let replayed = false;
    let ended = false;
    const deliver = (event: JobEvent) => {
      if (ended) return;
      listener(event);
      if (event.type === 'state' && isFinished(event.job.state)) {
        ended = true;
        unsubscribe();
        onEnd();
      }
    };
    const unsubscribe = this.events.subscribe(id, (event) => (replayed ? deliver(event) : pending.push(event)));
    let job: JobRecord;
    try {
      job = await this.get(id);
    } catch (error) {
      unsubscribe();
      throw error;
    }
    deliver({ type: 'state', jobId: id, job });
    replayed = true;
    for (const event of pending) deliver(event);
    return () => {
      ended = true;
      unsubscribe();
    };
  }

  /**
   * Cancels a queued or running job: a queued one never starts, a running one's worker is
   * terminated. Either way the job ends failed with "cancelled by <actor>", nothing is
   * registered, and the cancellation is audited. A finished job cannot be cancelled (conflict).
   */
  async cancel(id: string, principal: Principal): Promise<JobRecord> {
    const job = await this.get(id);
    if (isFinished(job.state)) throw new ServiceError('conflict', `job ${id} already ${job.state}; nothing to cancel`);
    if (job.node !== null && job.node !== this.#deps.node) {
      throw new ServiceError('unavailable', `job ${id} runs on server ${job.node}; send the cancel there (this is ${this.#deps.node})`);
    }
    const actor = actorOf(principal);
    const message = `cancelled by ${actor}`;
    const at = new Date().toISOString();
    await this.#deps.store.audit.append({ at, actor, action: 'job.cancel', target: `job:${id}`, details: { state: job.state } });
    const queued = this.#queue.findIndex((entry) => entry.id === id);
    if (queued >= 0) {
      this.#queue.splice(queued, 1);
      await this.#setState(id, { state: 'failed', error: message });
      this.#deps.metrics.jobsFinished.inc({ state: 'failed' });
      return this.get(id);
    }
    const worker = this.#workers.get(id);
    if (worker) {
      this.#cancelled.set(id, message);
      let unsubscribe = () => {};
      const ended = new Promise<void>((resolve) => {
        unsubscribe = this.events.subscribe(id, (event) => {
          if (event.type === 'state' && isFinished(event.job.state)) resolve();
        });
      });
      try {
        await worker.terminate();
        // The job may have finished before we subscribed (its result was being registered).
        if (!isFinished((await this.get(id)).state)) await ended;
      } finally {
        unsubscribe();
      }
    }
    return this.get(id);
  }

  /** Terminates running workers; their jobs are marked failed. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#queue.length = 0;
    await Promise.all([...this.#workers.values()].map((worker) => worker.terminate()));
    await this.#deps.store.jobs.failUnfinished(SHUTDOWN_REASON, new Date().toISOString(), this.#deps.node).catch(() => {});
  }

  #assertRoomInQueue(): void {
    if (this.#queue.length >= this.#deps.maxQueuedJobs) {
      throw new ServiceError('too_many_requests', `${this.#queue.length} pruning jobs are already waiting for a worker (--max-queued-jobs); try again when one has started`);
    }
  }

  #pump(): void {
    while (!this.#stopping && this.#workers.size < this.#deps.maxConcurrentJobs && this.#queue.length > 0) {
      const next = this.#queue.shift()!;
      void this.#run(next);
    }
  }

  async #run(job: QueuedJob): Promise<void> {
    try {
      await this.#setState(job.id, { state: 'running' });
      const result = await this.#runWorker(job);
      if (this.#stopping) return;
      await this.#setState(job.id, { state: 'succeeded', result });
      this.#deps.metrics.jobsFinished.inc({ state: 'succeeded' });
    } catch (error) {
      if (this.#stopping) return;
      const cancelled = this.#cancelled.get(job.id);
      const message = cancelled ?? (error instanceof ServiceError ? error.message : `internal error: ${errorMessage(error)}`);
      if (cancelled) this.#deps.log.info({ job: job.id }, message);
      else if (error instanceof PruneWorkerFault) this.#deps.log.error({ job: job.id, error: error.message, stack: error.workerStack }, 'pruning job failed');
      else if (!(error instanceof ServiceError)) this.#deps.log.error({ err: error, job: job.id }, 'pruning job failed');
      await this.#setState(job.id, { state: 'failed', error: message }).catch((persistError) =>
        this.#deps.log.error({ err: persistError, job: job.id }, 'cannot record the job failure'),
      );
      this.#deps.metrics.jobsFinished.inc({ state: 'failed' });
    } finally {
      this.#cancelled.delete(job.id);
      await rm(join(this.#deps.workDir, job.id), { recursive: true, force: true }).catch(() => {});
      this.#pump();
    }
  }

  #runWorker(job: QueuedJob): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(WORKER_ENTRY, { workerData: job.input, execArgv: [] });
      this.#workers.set(job.id, worker);
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
          const now = Date.now();
          if (message.event.phase !== lastPhase || now - lastPersist > PROGRESS_PERSIST_INTERVAL_MS) {
            lastPersist = now;
            lastPhase = message.event.phase;
            void this.#deps.store.jobs.update(job.id, { progress: message.event }, new Date().toISOString()).catch(() => {});
          }
        } else if (message.type === 'error') {
          // The job's data or options (a UserError in the worker) versus a fault of ours.
          const failure = message.userError ? new ServiceError('bad_request', message.message) : new PruneWorkerFault(message.message, message.stack);
          finish(() => Promise.reject(failure));
          void worker.terminate();
        } else {
          finish(() => this.#register(job, message));
          void worker.terminate();
        }
      });
      worker.on('error', (error) => finish(() => Promise.reject(error)));
      worker.on('exit', (code) => {
        this.#workers.delete(job.id);
        finish(() => Promise.reject(new Error(this.#stopping ? SHUTDOWN_REASON : `the pruning worker exited (code ${code}) without a result`)));
        // The worker's slot is free only now: start the next queued job.
        this.#pump();
      });
    });
  }

  async #register(job: QueuedJob, done: Extract<PruneWorkerMessage, { type: 'done' }>): Promise<Record<string, unknown>> {
    const artifacts = await verifiedJobArtifacts(job.input.outDir, done, this.#deps.signingPublicKey);
    for (const { dir, manifest } of [artifacts.general, artifacts.pruned]) await storeArtifactFiles(dir, manifest, this.#deps.blobs);
    const actor = job.actor;
    const [general, pruned] = await this.#deps.store.transaction(async (tx) => [
      await this.#deps.registry.registerIn(tx, { model: job.input.name, manifest: artifacts.general.manifest, actor }),
      await this.#deps.registry.registerIn(tx, { model: job.input.name, manifest: artifacts.pruned.manifest, actor }),
    ]);
    return {
      general: { model: general.model, version: general.version, artifactId: general.artifactId },
      pruned: { model: pruned.model, version: pruned.version, artifactId: pruned.artifactId },
      summary: done.summary,
    };
  }

  async #setState(id: string, changes: { state: JobState; result?: unknown; error?: string }): Promise<void> {
    await this.#deps.store.jobs.update(id, changes, new Date().toISOString());
    const job = await this.#deps.store.jobs.get(id);
    if (job) this.events.emit({ type: 'state', jobId: id, job });
  }
}

/** A pruning worker's own failure (not the job's data): logged with the worker's stack. */
class PruneWorkerFault extends Error {
  constructor(
    message: string,
    readonly workerStack: string | undefined,
  ) {
    super(message);
  }
}

export function isFinished(state: JobState): boolean {
  return state === 'succeeded' || state === 'failed';
}
