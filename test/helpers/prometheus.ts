import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findExecutable, freePort } from './engines.ts';

/** /usr/bin/prometheus (or PROMETHEUS_BIN, or on PATH); undefined when not installed. */
export function prometheusBinary(): string | undefined {
  return findExecutable([process.env.PROMETHEUS_BIN ?? '/usr/bin/prometheus', 'prometheus']);
}

/** /usr/bin/promtool (or PROMTOOL_BIN, or on PATH); undefined when not installed. */
export function promtoolBinary(): string | undefined {
  return findExecutable([process.env.PROMTOOL_BIN ?? '/usr/bin/promtool', 'promtool']);
}


/** The JSON body of a Prometheus HTTP API answer. */
export interface PrometheusApiResponse {
  status: 'success' | 'error';
  data?: { resultType: string; result: unknown };
  errorType?: string;
  error?: string;
  warnings?: string[];
}

/**
 * A private Prometheus on an ephemeral port with its own temporary directory (config, files it
 * references, TSDB). `prepare` writes the config: it gets the directory and returns the config
 * file path (relative paths in the config resolve against that file's directory).
 */
export class PrometheusProcess {
  #child: ChildProcess | undefined;
  #stderr = '';

  private constructor(
    readonly dir: string,
    readonly url: string,
  ) {}

  static async start(binary: string, prepare: (dir: string) => Promise<string>): Promise<PrometheusProcess> {
    const dir = await mkdtemp(join(tmpdir(), 'fleetprune-prom-'));
    const port = await freePort();
    const instance = new PrometheusProcess(dir, `http://127.0.0.1:${port}`);
    try {
      const config = await prepare(dir);
      const child = spawn(binary, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
      instance.#child = child;
      child.stderr!.on('data', (chunk: Buffer) => (instance.#stderr += chunk.toString()));
      await instance.#waitReady(15_000);
      return instance;
    } catch (error) {
      await instance.stop();
      throw error;
    }
  }

  /** Starts Prometheus with one scrape job `job` of the given targets, scraped (and rules evaluated) every second. */
  static startScraping(binary: string, job: string, targets: readonly string[]): Promise<PrometheusProcess> {
    return PrometheusProcess.start(binary, async (dir) => {
      const config = join(dir, 'prometheus.yml');
      const list = targets.map((target) => `'${target}'`).join(', ');
      await writeFile(config, `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ${job}\n    static_configs:\n      - targets: [${list}]\n`);
      return config;
    });
  }

  stderr(): string {
    return this.#stderr;
  }

  async #waitReady(deadlineMs: number): Promise<void> {
    const started = Date.now();
    while (Date.now() - started < deadlineMs) {
      if (this.#child?.exitCode !== null) throw new Error(`prometheus exited: ${this.#stderr.slice(-2000)}`);
      try {
        if ((await fetch(`${this.url}/-/ready`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`prometheus was not ready within ${deadlineMs} ms: ${this.#stderr.slice(-2000)}`);
  }

  /** GET /api/v1/<path> with query parameters; the parsed body, whatever the HTTP status. */
  async api(path: string, params: Record<string, string> = {}): Promise<PrometheusApiResponse> {
    const response = await fetch(`${this.url}/api/v1/${path}?${new URLSearchParams(params)}`);
    return (await response.json()) as PrometheusApiResponse;
  }

  /** An instant query. */
  query(expr: string, time: Date = new Date()): Promise<PrometheusApiResponse> {
    return this.api('query', { query: expr, time: String(time.getTime() / 1000) });
  }

  /** Polls `check` every 250 ms until it returns true; throws with the last state and stderr after the deadline. */
  async waitFor(what: string, check: () => Promise<boolean | string>, deadlineMs = 30_000): Promise<void> {
    const started = Date.now();
    let last = '';
    while (Date.now() - started < deadlineMs) {
      try {
        const result = await check();
        if (result === true) return;
        last = String(result);
      } catch (error) {
        last = String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`Prometheus: ${what} not reached within ${deadlineMs} ms (${last}); stderr: ${this.#stderr.slice(-2000)}`);
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
