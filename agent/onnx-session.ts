import { createRequire } from 'node:module';
import './ort-telemetry-off.ts';
import * as ort from 'onnxruntime-node';

/** The session options of every model the agent runs: one thread, as on a small field device. */
export const AGENT_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };

/** The part of an onnxruntime session the agent uses; `ort.InferenceSession` has this shape too. */
export interface OnnxSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  run(feeds: ort.InferenceSession.FeedsType): Promise<ort.InferenceSession.ReturnType>;
  release(): Promise<void>;
}

/** How a session runs: `inline` in the calling turn of the event loop, or through the package's public `run`. */
export type OnnxRunPath = 'inline' | 'public';

/** onnxruntime-node versions whose native binding (dist/binding.js) this module was written and tested against. */
export const INLINE_TESTED_VERSIONS = /^1\.30\./;

/** The part of onnxruntime-node's dist/binding.js used here (the typings in that private file say the same). */
interface NativeValueMetadata {
  name: string;
  isTensor: boolean;
  symbolicDimensions: string[];
  shape: number[];
  type: number;
}
interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: ort.InferenceSession.SessionOptions): void;
  readonly inputMetadata: NativeValueMetadata[];
  readonly outputMetadata: NativeValueMetadata[];
  /** Synchronous. */
  run(feeds: ort.InferenceSession.FeedsType, fetches: Record<string, null>, options: ort.InferenceSession.RunOptions): Record<string, ort.OnnxValue>;
  dispose(): void;
}
interface NativeBinding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt: () => void;
}

/**
 * onnxruntime-node's native session, which runs synchronously. The package's public
 * `InferenceSession.run()` defers every call to a later turn of the event loop (setImmediate)
 * before running it on this same thread; that trip costs several µs a call (BENCHMARKS.md,
 * "onnxruntime-node call path") and lets unrelated callbacks (MQTT, HTTP) land inside a timed
 * inference. The binding is a file of the package, not its public API, so it is used only with the
 * onnxruntime-node versions it was tested with and only when it has the expected shape; otherwise
 * sessions take the public API, and a test fails to say so.
 */
const native: NativeBinding | null = (() => {
  try {
    const require = createRequire(import.meta.url);
    const { version } = require('onnxruntime-node/package.json') as { version?: unknown };
    if (typeof version !== 'string' || !INLINE_TESTED_VERSIONS.test(version)) return null;
    const loaded = require('onnxruntime-node/dist/binding.js') as Partial<NativeBinding>;
    const ctor = loaded.binding?.InferenceSession;
    const usable =
      typeof ctor === 'function' &&
      typeof loaded.initOrt === 'function' &&
      ['loadModel', 'run', 'dispose'].every((method) => typeof (ctor.prototype as unknown as Record<string, unknown>)[method] === 'function');
    return usable ? (loaded as NativeBinding) : null;
  } catch {
    return null;
  }
})();

/** The path sessions take in this process unless told otherwise. */
export const ONNX_RUN_PATH: OnnxRunPath = native ? 'inline' : 'public';

/**
 * A session of an ONNX model's bytes; throws onnxruntime's error when the bytes are not a model it
 * can load. `path` 'public' forces the package's public API (the fallback, and the comparison).
 */
export async function createOnnxSession(
  bytes: Uint8Array,
  options: ort.InferenceSession.SessionOptions = AGENT_SESSION_OPTIONS,
  path: OnnxRunPath = ONNX_RUN_PATH,
): Promise<OnnxSession> {
  if (path === 'public' || !native) return ort.InferenceSession.create(bytes, options);
  native.initOrt();
  const session = new native.binding.InferenceSession();
  session.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, options);
  return new InlineOnnxSession(session);
}

class InlineOnnxSession implements OnnxSession {
  readonly inputNames: string[];
  readonly outputNames: string[];
  readonly inputMetadata: ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: ort.InferenceSession.ValueMetadata[];
  readonly #fetches: Record<string, null>;
  #session: NativeSession | null;

  constructor(session: NativeSession) {
    this.#session = session;
    this.inputMetadata = session.inputMetadata.map(valueMetadata);
    this.outputMetadata = session.outputMetadata.map(valueMetadata);
    this.inputNames = this.inputMetadata.map((value) => value.name);
    this.outputNames = this.outputMetadata.map((value) => value.name);
    this.#fetches = Object.fromEntries(this.outputNames.map((name) => [name, null]));
  }

  /** Runs now, in this turn of the event loop; the promise is settled when it returns. */
  run(feeds: ort.InferenceSession.FeedsType): Promise<ort.InferenceSession.ReturnType> {
    try {
      if (!this.#session) throw new Error('the onnxruntime session was released');
      for (const name of this.inputNames) if (feeds[name] === undefined) throw new Error(`input '${name}' is missing in 'feeds'.`);
      const results = this.#session.run(feeds, this.#fetches, {});
      const out: Record<string, ort.Tensor> = {};
      for (const [name, value] of Object.entries(results)) {
        out[name] = value instanceof ort.Tensor ? value : new ort.Tensor(value.type, value.data as never, value.dims);
      }
      return Promise.resolve(out);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async release(): Promise<void> {
    const session = this.#session;
    this.#session = null;
    session?.dispose();
  }
}

const TENSOR_TYPES: Record<number, ort.Tensor.Type | undefined> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 21: 'uint4', 22: 'int4',
};

/** The binding's raw value metadata in the public API's form (as onnxruntime-node's own backend converts it). */
function valueMetadata(raw: NativeValueMetadata): ort.InferenceSession.ValueMetadata {
  if (!raw.isTensor) return { name: raw.name, isTensor: false };
  const type = TENSOR_TYPES[raw.type];
  if (!type) throw new Error(`model value "${raw.name}" has an unsupported data type (${raw.type})`);
  const shape = raw.shape.map((dim, i) => {
    if (dim === -1) return raw.symbolicDimensions[i]!;
    if (dim < 0) throw new Error(`model value "${raw.name}" has an invalid dimension (${dim})`);
    return dim;
  });
  return { name: raw.name, isTensor: true, type, shape };
}
