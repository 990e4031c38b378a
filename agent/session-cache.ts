import type * as ort from 'onnxruntime-node';
import { AGENT_SESSION_OPTIONS, createOnnxSession, type OnnxSession } from './onnx-session.ts';
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

  constructor(readonly options: ort.InferenceSession.SessionOptions = AGENT_SESSION_OPTIONS) {}

  get size(): number {
    return this.#entries.size;
  }

  async acquire(source: OnnxSource): Promise<SessionLease> {
    const { artifactId } = source;
    let entry = this.#entries.get(artifactId);
    if (!entry) {
      entry = { session: readVerifiedOnnx(source).then((bytes) => createOnnxSession(bytes, this.options)), leases: 0 };
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
