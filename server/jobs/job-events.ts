import { EventEmitter } from 'node:events';
import type { JobRecord } from '../store/repositories/jobs-repository.ts';
import type { ProgressEvent } from '../pruning/odf2nna.ts';

export type JobEvent = { type: 'progress'; jobId: string; progress: ProgressEvent } | { type: 'state'; jobId: string; job: JobRecord };

/** Fan-out of live job events to SSE and gRPC watchers. */
export class JobEvents {
  readonly #emitter = new EventEmitter();

  constructor() {
    this.#emitter.setMaxListeners(0);
  }

  emit(event: JobEvent): void {
    this.#emitter.emit(event.jobId, event);
  }

  /** Returns the unsubscribe function. */
  subscribe(jobId: string, listener: (event: JobEvent) => void): () => void {
    this.#emitter.on(jobId, listener);
    return () => this.#emitter.off(jobId, listener);
  }
}
