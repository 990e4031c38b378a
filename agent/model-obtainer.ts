import type { KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Assignment } from '../shared/protocol/payloads.ts';
import { describeSystemError, errorMessage, isSystemError } from '../shared/util/errors.ts';
import type { Logger } from '../shared/util/log.ts';
import { DiskError, FetchError, type ArtifactFetcher } from './artifact-fetcher.ts';
import { manifestIdentityProblem } from './manifest-identity.ts';
import type { InstalledModel, ModelStore } from './model-store.ts';

/** The longest a server's Retry-After is honoured between two download attempts. */
const MAX_RETRY_AFTER_MS = 60_000;

/** The agent is stopping: the assignment stays pending (resumed at the next start), not refused. */
export class StoppingError extends Error {}

/**
 * Every download attempt failed for a transient reason (the server or the network down, 5xx,
 * timeouts): no verdict on the model, so the assignment is not refused. It stays pending and is
 * taken again later (its retry timer, its next delivery, the next start), for as long as it is
 * current. Refusing it made a 15-second outage fail a rollout and mark a sound candidate failed,
 * and left a revert that had to download its model undone for good.
 */
export class DownloadDeferred extends Error {}

export interface ModelObtainerOptions {
  store: ModelStore;
  fetcher: ArtifactFetcher;
  publicKey: KeyObject;
  logger: Logger;
  /** Download attempts for a transient failure (network, 5xx) in one take of the assignment, before it is deferred (DownloadDeferred). */
  attempts: number;
  retryBaseDelayMs: number;
  /** Aborted when the agent stops. */
  stopping: AbortSignal;
  /** Whether the agent is stopping. */
  stopped: () => boolean;
  /** The models garbage collection keeps. */
  referencedModels: () => Set<string>;
}

/**
 * Obtains the verified model an assignment names: from the store when it is there and sound,
 * else downloaded, verified and installed, retrying transient failures with a backoff.
 */
export class ModelObtainer {
  readonly #options: ModelObtainerOptions;

  constructor(options: ModelObtainerOptions) {
    this.#options = options;
  }

  /** A verified model for the assignment: from the store if it is there, else downloaded. */
  async obtain(assignment: Assignment, signal: AbortSignal): Promise<InstalledModel> {
    if (await this.#options.store.has(assignment.sha256)) {
      const verified = await this.#options.store.loadVerified(assignment.sha256, this.#options.publicKey);
      if (!('failure' in verified)) {
        // As a download's manifest is checked (fetchVerifiedManifest): the model it is, not only its files.
        const mismatch = manifestIdentityProblem(verified.manifest, assignment, 'the assignment');
        if (mismatch) throw new FetchError(mismatch, true);
        return verified;
      }
      this.#options.logger.warn({ reason: verified.failure }, 'a stored model failed verification; downloading it again');
      await this.#options.store.collectGarbage(this.#options.referencedModels());
    }
    const { attempts, retryBaseDelayMs: baseDelay } = this.#options;
    for (let attempt = 1; ; attempt++) {
      try {
        const verified = await this.#options.fetcher.fetchVerifiedManifest(assignment, signal);
        const { manifest } = verified;
        this.#options.logger.info({ assignmentId: assignment.id, bytes: manifest.files['model.onnx']?.bytes }, 'downloading model');
        const superseded = await this.#options.store.removeOtherDownloads(manifest.files['model.onnx']!.sha256);
        if (superseded.length > 0) this.#options.logger.info({ files: superseded }, 'removed partial downloads of replaced assignments');
        const fetched = await this.#options.fetcher.downloadModel(verified, signal);
        // The endorsement of a signer key other than the server's is kept with the model: loads without an assignment (start, rollback) check it again.
        // The manifest is stored as the bytes downloaded, within the limit every later load applies.
        const installed = await this.#options.store.install(verified, fetched.onnxPath, this.#options.publicKey, assignment.signer);
        this.#options.logger.info({ assignmentId: assignment.id, artifactId: installed.artifactId }, 'model verified and installed');
        return installed;
      } catch (error) {
        if (this.#options.stopped()) throw new StoppingError(errorMessage(error));
        if (signal.aborted) throw new Error(errorMessage(signal.reason));
        // The device's own storage failed (a full disk, a quota, a read-only or failing card), in the
        // download or the install: no retry helps, and the partial download goes before the refusal
        // is written, or it would keep the disk full.
        if (error instanceof DiskError || (!(error instanceof FetchError) && isSystemError(error))) {
          await this.#discardDownloads();
          throw new Error(error instanceof DiskError ? error.message : describeSystemError(error));
        }
        const permanent = !(error instanceof FetchError) || error.permanent;
        if (permanent) throw new Error(errorMessage(error));
        if (attempt >= attempts) throw new DownloadDeferred(`${attempt} download attempts failed: ${errorMessage(error)}`);
        const backoff = baseDelay * 2 ** (attempt - 1);
        const delay = Math.max(backoff, Math.min(error instanceof FetchError ? (error.retryAfterMs ?? 0) : 0, MAX_RETRY_AFTER_MS));
        this.#options.logger.warn({ attempt, delayMs: delay, err: errorMessage(error) }, 'model download failed; retrying');
        await sleep(delay, undefined, { signal: AbortSignal.any([signal, this.#options.stopping]) }).catch(() => {});
        if (this.#options.stopped()) throw new StoppingError('stopping');
        if (signal.aborted) throw new Error(errorMessage(signal.reason));
      }
    }
  }

  /** Removes partial downloads and staging directories after the disk failed a download or install (each may fail too: a read-only card). */
  async #discardDownloads(): Promise<void> {
    const removed = await this.#options.store.removeOtherDownloads().catch(() => [] as string[]);
    if (removed.length > 0) this.#options.logger.info({ files: removed }, 'removed the partial download the disk could not take');
    await this.#options.store.collectGarbage(this.#options.referencedModels()).catch(() => {});
  }
}
