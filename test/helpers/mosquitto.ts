import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { renderMosquittoConf, writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { findExecutable, freePort, tcpReachable } from './engines.ts';

export function mosquittoBinary(): string | undefined {
  return findExecutable(['mosquitto', '/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto']);
}

/**
 * A private Mosquitto process on an ephemeral port, configured like deploy/mosquitto (auth on,
 * password and ACL files in `authDir`, which the server writes). SIGHUP reloads those files.
 */
export class MosquittoProcess {
  #child: ChildProcess | undefined;
  stderr = '';

  private constructor(
    readonly binary: string,
    readonly dir: string,
    readonly authDir: string,
    readonly port: number,
  ) {}

  static async create(binary: string): Promise<MosquittoProcess> {
    const dir = await mkdtemp(join(tmpdir(), 'fleetprune-mosquitto-'));
    return new MosquittoProcess(binary, dir, join(dir, 'auth'), await freePort());
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /**
   * A started Mosquitto whose files admit only the server identity (with a fresh password), and a
   * pid file in `pidDir` for the server's --mosquitto-pid-file; the server rewrites the files
   * (with every device) from then on.
   */
  static async startForServer(binary: string, pidDir: string): Promise<{ mosquitto: MosquittoProcess; password: string; pidFile: string }> {
    const mosquitto = await MosquittoProcess.create(binary);
    const password = randomBytes(18).toString('base64url');
    await writeMosquittoAuthFiles(mosquitto.authDir, { username: DEFAULT_SERVER_USERNAME, password }, new InMemoryCredentialStore());
    await mosquitto.start();
    const pidFile = join(pidDir, 'mosquitto.pid');
    await writeFile(pidFile, `${mosquitto.pid}\n`);
    return { mosquitto, password, pidFile };
  }

  /** Starts mosquitto; the password and ACL files must exist by then. `extra` lines override the shipped settings. */
  async start(extra: readonly string[] = []): Promise<void> {
    const confPath = join(this.dir, 'mosquitto.conf');
    // Started as root, mosquitto would switch to the `mosquitto` user and lose access to the temp dir.
    const user = userInfo().username === 'root' ? 'root' : undefined;
    await writeFile(confPath, [renderMosquittoConf({ port: this.port, authDir: this.authDir, user }), ...extra, ''].join('\n'));
    const child = spawn(this.binary, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.#child = child;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`mosquitto exited: ${this.stderr}`);
      if (await tcpReachable('127.0.0.1', this.port, 200)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`mosquitto did not start listening on ${this.port}: ${this.stderr}`);
  }

  /** The mosquitto process id (for a server's --mosquitto-pid-file). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Makes mosquitto re-read its password and ACL files. */
  async reload(): Promise<void> {
    this.#child?.kill('SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  /** Stops mosquitto and removes its files; `{ keepFiles: true }` leaves them, as a crash does, for a start() again. */
  async stop(options: { keepFiles?: boolean } = {}): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    if (!options.keepFiles) await rm(this.dir, { recursive: true, force: true });
  }
}
