import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { TrainConfig, TrainingData, TrainingOutcome, TrainingStart } from './training.ts';
import type { TrainingThreadInput, TrainingThreadMessage } from './training-thread-protocol.ts';

const WORKER_ENTRY = new URL('./training-worker-entry.mjs', import.meta.url);

/**
 * With `trainingThreads: 'auto'`, a second thread is used when the machine has a second core and
 * one epoch of the general model costs at least this many FLOPs (6 per weight per training row:
 * forward, and backward for activations and weights). At the wasm backend's few GFLOP/s that is
 * a training of minutes, against about a second of CPU to start a thread with its own tfjs; the
 * shipped tabular data sets stay below it (breast_cancer: 0.09 GFLOP), the MNIST subset is far
 * above (5.7 GFLOP).
 */
export const AUTO_THREAD_MIN_EPOCH_FLOPS = 1e9;

/** How many threads train: 1 (this one) or 2 (this one and a TrainingThread). */
export function trainingThreadCount(setting: 'auto' | number, trainRows: number, generalParams: number): number {
  if (setting !== 'auto') return setting;
  return availableParallelism() >= 2 && 6 * generalParams * trainRows >= AUTO_THREAD_MIN_EPOCH_FLOPS ? 2 : 1;
}

/**
 * A second thread that trains networks while this one trains another: ODF2NNA's independent
 * trainings (the next ε's retraining, the scratch baseline beside the L1 one) then run on two
 * cores. It gets the training data once, at start, and loads its own tfjs with the same backend;
 * trainModel is deterministic, so what it trains is exactly what this thread would have.
 * Starting it takes about a second, spent while this thread trains the general model.
 */
export class TrainingThread {
  readonly #worker: Worker;
  readonly #ready: Promise<boolean>;
  #pending = new Map<number, { resolve: (outcome: TrainingOutcome) => void; reject: (error: Error) => void }>();
  #nextId = 1;
  #failure: Error | undefined;

  constructor(data: TrainingData, backend: string) {
    const values = (split: TrainingData['train']) => ({ rows: split.x.shape[0], x: Float32Array.from(split.x.dataSync()), y: Float32Array.from(split.y.dataSync()) });
    const input: TrainingThreadInput = {
      backend,
      task: data.task,
      inputs: data.inputs,
      outputs: data.outputs,
      scaling: data.scaling,
      ignoredInputs: [...data.ignoredInputs],
      train: values(data.train),
      validation: values(data.validation),
    };
    const { train, validation } = input;
    this.#worker = new Worker(WORKER_ENTRY, {
      workerData: input,
      transferList: [train.x.buffer, train.y.buffer, validation.x.buffer, validation.y.buffer] as ArrayBuffer[],
      execArgv: [],
    });
    this.#ready = new Promise<boolean>((resolve) => {
      this.#worker.on('message', (message: TrainingThreadMessage) => {
        if (message.type === 'ready') {
          if (message.backend === backend) return resolve(true);
          this.#fail(new Error(`the training thread got the tfjs backend ${message.backend}, not ${backend}`));
          return resolve(false);
        }
        if (message.type === 'start-failed') {
          this.#fail(new Error(`the training thread could not start: ${message.message}`));
          return resolve(false);
        }
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.type === 'trained') pending?.resolve(message.outcome);
        else pending?.reject(Object.assign(new Error(message.message), message.stack ? { stack: message.stack } : {}));
      });
      this.#worker.on('error', (error) => {
        this.#fail(error);
        resolve(false);
      });
      this.#worker.on('exit', (code) => {
        this.#fail(new Error(`the training thread ended (exit code ${code})`));
        resolve(false);
      });
    });
  }

  /** Whether the thread started, on the same backend as this one; false: train here instead. */
  usable(): Promise<boolean> {
    return this.#ready;
  }

  /** Trains a network on the thread; rejects with the training's error, or when the thread ended. */
  async train(start: TrainingStart, config: TrainConfig): Promise<TrainingOutcome> {
    if (!(await this.#ready) || this.#failure) throw this.#failure ?? new Error('the training thread is not running');
    const id = this.#nextId++;
    return new Promise<TrainingOutcome>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, start, config });
    });
  }

  async close(): Promise<void> {
    this.#failure ??= new Error('the training thread was closed');
    await this.#worker.terminate();
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const pending of this.#pending.values()) pending.reject(this.#failure);
    this.#pending.clear();
  }
}
