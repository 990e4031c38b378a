import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Mutex } from '../../shared/util/mutex.ts';
import { ServiceError } from '../app/service-error.ts';
import type { WorkerReply, WorkerRequest } from '../app/worker-pool.ts';
import type { ModelCheckInput } from './model-check-process.ts';

const ENTRY = fileURLToPath(new URL('./model-check-process-entry.mjs', import.meta.url));

/** A model's check that ran over its time: its process was killed. */
export class ModelCheckTimeout extends Error {}

/**
 * Runs model checks (model-check-process.ts) in a child process, one at a time: a model nobody has
 * run yet may run for ever (a signed artifact whose graph loops). Run on the server's own thread
 * it stopped the HTTP and gRPC APIs and the broker with it; in a worker thread it could not be
 * ended (a thread in native code is never stopped, and the process could not exit). A check over
 * `timeoutMs` kills the process (SIGKILL) and fails with ModelCheckTimeout; the next check starts
 * another. The process is started when first needed (about 0.1 s), kept while checks come, and
 * ended once idle for `idleMs`; idle, it never keeps the server's process alive, and it is killed
 * when the server's process exits.
 */
export class ModelCheckRunner {
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  readonly #turns = new Mutex();
  #child: ChildProcess | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #nextId = 1;
  /** What the child wrote on stderr last (a crash's reason: onnxruntime failing to load, an abort). */
  #stderrTail = '';
  /** Bumped by stop(): a check queued before it is refused. */
  #generation = 0;

  constructor(options: { timeoutMs: number; idleMs: number }) {
    this.#timeoutMs = options.timeoutMs;
    this.#idleMs = options.idleMs;
  }

  /** The model's problem (null: none); ModelCheckTimeout when it ran over its time; an Error when the check itself failed. */
  check(input: ModelCheckInput): Promise<string | null> {
    const generation = this.#generation;
    return this.#turns.run(() => (generation === this.#generation ? this.#checkNow(input) : Promise.reject(shuttingDown())));
  }

  /**
   * The server stopping: a check under way is ended with its process (SIGKILL), and those waiting
   * are refused, both as the server shutting down (503). A later check starts a process again.
   */
  stop(): void {
    this.#generation++;
    clearTimeout(this.#idleTimer);
    const child = this.#child;
    this.#child = undefined;
    if (child) {
      child.emit('stopping');
      child.kill('SIGKILL');
    }
  }

  #checkNow(input: ModelCheckInput): Promise<string | null> {
    clearTimeout(this.#idleTimer);
    const child = (this.#child ??= this.#start());
    child.ref();
    (child.channel as { ref?: () => void } | undefined)?.ref?.();
    const id = this.#nextId++;
    return new Promise<string | null>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        child.off('stopping', onStopping);
      };
      const onMessage = (reply: WorkerReply<string | null>) => {
        if (reply.id !== id) return;
        done();
        this.#idle(child);
        if (reply.type === 'valid') resolve(reply.result);
        else reject(Object.assign(new Error(`checking model.onnx failed: ${reply.message}`), reply.type === 'error' && reply.stack ? { stack: reply.stack } : {}));
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        done();
        const said = this.#stderrTail.trim().split('\n').slice(-3).join(' | ');
        reject(new Error(`the model check process exited (${signal ?? `code ${code}`}) while checking model.onnx${said ? `: ${said}` : ''}`));
      };
      const onStopping = () => {
        done();
        reject(shuttingDown());
      };
      const timer = setTimeout(() => {
        done();
        this.#kill(child);
        reject(new ModelCheckTimeout(`${Math.round(this.#timeoutMs / 100) / 10} s`));
      }, this.#timeoutMs);
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.once('stopping', onStopping);
      child.send({ id, input } satisfies WorkerRequest<ModelCheckInput>, (error) => {
        if (!error) return;
        done();
        this.#kill(child);
        reject(new Error(`cannot send model.onnx to its check: ${error.message}`));
      });
    });
  }

  #start(): ChildProcess {
    // Its own node, without the server's flags (a test runner's, say); IPC in structured clone, so the model's bytes go as bytes.
    // Its stderr is kept (its last lines): a crash says why.
    const child = fork(ENTRY, [], { execArgv: [], serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.#stderrTail = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => (this.#stderrTail = (this.#stderrTail + text).slice(-2048)));
    (child.stderr as { unref?: () => void } | null)?.unref?.();
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', () => {
      process.off('exit', killOnExit);
      if (this.#child === child) this.#child = undefined;
    });
    // An error event (it could not be started, a signal it could not get) is told through its exit or the send's callback.
    child.on('error', () => {});
    return child;
  }

  #kill(child: ChildProcess): void {
    if (this.#child === child) this.#child = undefined;
    child.kill('SIGKILL');
  }

  #idle(child: ChildProcess): void {
    child.unref();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      if (this.#child === child) this.#child = undefined;
      child.disconnect();
    }, this.#idleMs);
    this.#idleTimer.unref();
  }
}

function shuttingDown(): ServiceError {
  return new ServiceError('retry_later', 'the server is shutting down; push again once it is back');
}
