import { createRequire } from 'node:module';
import type { TestContext } from 'node:test';

/**
 * Makes every onnxruntime inference in this process take `ms` longer, asleep, until the test ends:
 * a slow device, whose benchmark stays running long enough for a test to interrupt it.
 *
 * Tests used to get that window from a benchmark of hundreds of thousands of samples, which spent
 * a core for a minute and, on a loaded machine, far longer; a sleep (Atomics.wait) takes the same
 * wall time on any machine and no CPU. Like a slow inference, it holds the event loop: the
 * benchmark gives it a turn between samples (model-benchmark.ts), where interruptions land.
 *
 * Sessions created from then on are slow: the one class both run paths create their sessions
 * from (onnxruntime-node's native InferenceSession; onnx-session.ts inline, and the package's
 * public API) is replaced by a subclass whose run sleeps first (the native run itself cannot be
 * replaced: it is read-only). Throws if that class is not where it was.
 */
export function slowInference(t: TestContext, ms: number, options: { /** Which sessions are slow, by the order they are created from now on (0 first); all by default. */ sessions?: (index: number) => boolean } = {}): void {
  const require = createRequire(import.meta.url);
  type Session = new () => { run(...args: unknown[]): unknown };
  const { binding } = require('onnxruntime-node/dist/binding.js') as { binding?: { InferenceSession?: Session } };
  const Native = binding?.InferenceSession;
  if (typeof Native !== 'function' || typeof Native.prototype.run !== 'function') throw new Error('onnxruntime-node has no native InferenceSession to slow down');
  const asleep = new Int32Array(new SharedArrayBuffer(4));
  let created = 0;
  binding!.InferenceSession = class SlowInferenceSession extends Native {
    readonly #slow = options.sessions?.(created++) ?? true;
    override run(...args: unknown[]): unknown {
      if (this.#slow) Atomics.wait(asleep, 0, 0, ms);
      return super.run(...args);
    }
  };
  t.after(() => {
    binding!.InferenceSession = Native;
  });
}
