import type * as ort from 'onnxruntime-node';
import { AGENT_SESSION_OPTIONS, ONNX_RUN_PATH, createOnnxSession, type OnnxRunPath, type OnnxSession } from './onnx-session.ts';
import { readVerifiedOnnx, type OnnxSource } from './verified-onnx.ts';

export interface SessionLease {
  readonly session: OnnxSession;
  /** Gives the lease back; the session is released when its last lease is. */
  release(): Promise<void>;
}

/**
 * Shares one onnxruntime session per model among every agent in a process (artifact ids are
 * content hashes, so equal ids are equal models). The CLI agent has its own; a benchmark running
 * many agents in one process passes one cache to all of them.
 */
export interface SessionCache {
  /** A session of `source`'s model.onnx, loaded from bytes checked against its SHA-256. */
  acquire(source: OnnxSource): Promise<SessionLease>;
}

export class OrtSessionCache implements SessionCache {
  readonly #entries = new Map<string, { session: Promise<OnnxSession>; leases: number }>();

  /** `path`: how sessions run (onnx-session.ts); the default is what this onnxruntime-node allows. */
  constructor(
    readonly options: ort.InferenceSession.SessionOptions = AGENT_SESSION_OPTIONS,
    readonly path: OnnxRunPath = ONNX_RUN_PATH,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  async acquire(source: OnnxSource): Promise<SessionLease> {
    const { artifactId } = source;
    let entry = this.#entries.get(artifactId);
    if (!entry) {
      entry = { session: readVerifiedOnnx(source).then(async (bytes) => new DrainingSession(await createOnnxSession(bytes, this.options, this.path))), leases: 0 };
      this.#entries.set(artifactId, entry);
    }
    entry.leases++;
    const current = entry;
    let session: OnnxSession;
    try {
      session = await current.session;
    } catch (error) {
      current.leases--;
      if (this.#entries.get(artifactId) === current) this.#entries.delete(artifactId);
      throw error;
    }
    let released = false;
    return {
      session,
      release: async () => {
        if (released) return;
        released = true;
        current.leases--;
        if (current.leases === 0 && this.#entries.get(artifactId) === current) {
          this.#entries.delete(artifactId);
          await session.release();
        }
      },
    };
  }
}

/**
 * A shared session whose release waits for the runs already started on it. A request takes the
 * active model and starts its run in one turn of the event loop, but on the public path
 * (onnx-session.ts) onnxruntime runs it a turn later: an A/B switch releasing the old model in
 * between would fail that request ("Session already disposed") although it was accepted. Runs
 * started after the release are refused. Inline runs finish before any release, so nothing waits.
 */
class DrainingSession implements OnnxSession {
  readonly #inner: OnnxSession;
  #running = 0;
  #drained: (() => void) | undefined;
  #released = false;

  constructor(inner: OnnxSession) {
    this.#inner = inner;
  }

  get inputNames() {
    return this.#inner.inputNames;
  }
  get outputNames() {
    return this.#inner.outputNames;
  }
  get inputMetadata() {
    return this.#inner.inputMetadata;
  }
  get outputMetadata() {
    return this.#inner.outputMetadata;
  }

  run(feeds: ort.InferenceSession.FeedsType): Promise<ort.InferenceSession.ReturnType> {
    if (this.#released) return Promise.reject(new Error('the onnxruntime session was released'));
    this.#running++;
    return this.#inner.run(feeds).finally(() => {
      if (--this.#running === 0) this.#drained?.();
    });
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#running > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    await this.#inner.release();
  }
}
