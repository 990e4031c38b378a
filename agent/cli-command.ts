import { stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { Holdout, largeHoldoutWarning } from './holdout.ts';
import { countRefusal } from './agent-metrics.ts';
import { createDeviceHttpServer, DEVICE_HTTP_LIMITS } from './device-http-server.ts';
import { lockAgentDataDir, type DataDirLock } from './data-dir-lock.ts';
import { DEFAULT_DOWNLOAD_LIMITS } from './artifact-fetcher.ts';
import { loadAgentConfig, type AgentConfig } from '../shared/protocol/agent-config.ts';
import { ensureWritableDirectory } from '../shared/util/fs-checks.ts';
import { checkListenHost } from '../shared/util/listen-host.ts';
import { UserError, errorMessage, isSystemError, underFlag } from '../shared/util/errors.ts';
import { describeDataDirError } from './file-errors.ts';
import { createLogger } from '../shared/util/log.ts';
import { parseInteger, parseNumber } from '../shared/cli/option-parsers.ts';
import { onStopSignals } from '../shared/cli/stop-signals.ts';
import { goOnWhenOutputFails } from '../shared/cli/run-cli.ts';

interface AgentFlags {
  config: string;
  dataDir: string;
  holdout?: string;
  label?: string;
  httpPort: number;
  httpHost: string;
  shadowFraction: number;
  heartbeatSeconds: number;
  benchSamples: number;
  benchBatches: number;
  downloadIdleSeconds: number;
  downloadMinRate: number;
}

/** The most timed runs per model --bench-samples and --bench-batches allow. */
const MAX_BENCH_RUNS = 1_000_000;

export const AGENT_DESCRIPTION = 'run the edge agent: follow assignments over MQTT, verify, benchmark and serve models';

/** `fleetprune agent`. */
export function registerAgentCommand(program: Command): void {
  defineAgentCommand(program.command('agent').description(AGENT_DESCRIPTION));
}

/** The highest --download-min-rate taken: 1 GB/s. */
const MAX_DOWNLOAD_MIN_RATE = 1_000_000_000;

/**
 * The agent's options and action on `command`: the `agent` subcommand of the CLI, or the whole
 * program of the standalone agent bundle (agent/main.ts).
 */
export function defineAgentCommand(command: Command): Command {
  return command
    .requiredOption('--config <file>', 'agent config file written at enrollment')
    .requiredOption('--data-dir <dir>', 'where the agent keeps its model slots, downloads and outbox')
    .option('--holdout <file.csv>', 'labelled holdout CSV for on-device benchmarks')
    .option('--label <column>', 'label column of the holdout CSV')
    .option('--http-port <port>', 'port of POST /v1/predict and /metrics (0 = ephemeral)', parseInteger, 8780)
    .option('--http-host <host>', 'address the HTTP API listens on', '127.0.0.1')
    .option('--shadow-fraction <f>', 'fraction of predict requests also run on the candidate, 0..1', parseNumber, 0)
    .option('--heartbeat-seconds <s>', 'telemetry interval', parseNumber, 30)
    .option('--bench-samples <n>', 'single-row inferences timed per model in a benchmark', parseInteger, 500)
    .option('--bench-batches <n>', 'batches of 64 rows timed per model in a benchmark', parseInteger, 100)
    .option('--download-idle-seconds <s>', 'abort an artifact request that receives nothing for this long', parseNumber, DEFAULT_DOWNLOAD_LIMITS.idleTimeoutMs / 1000)
    .option(
      '--download-min-rate <bytes/s>',
      `abort an artifact request slower than this on average over each ${DEFAULT_DOWNLOAD_LIMITS.rateWindowMs / 1000} s (0 = no minimum)`,
      parseNumber,
      DEFAULT_DOWNLOAD_LIMITS.minBytesPerSecond,
    )
    .action(async (flags: AgentFlags) => {
      if (flags.holdout && !flags.label) throw new UserError('--holdout needs --label (the label column)');
      if (flags.label && !flags.holdout) throw new UserError('--label needs --holdout');
      if (!(flags.shadowFraction >= 0 && flags.shadowFraction <= 1)) throw new UserError('--shadow-fraction: must be between 0 and 1');
      // Below a second floods the broker; above a day, timers overflow (and offline detection is moot).
      if (!(flags.heartbeatSeconds >= 1 && flags.heartbeatSeconds <= 86_400)) throw new UserError('--heartbeat-seconds: must be between 1 and 86400');
      // A benchmark holds the agent's work queue (assignments and rollbacks wait for it), and its samples are held in memory.
      for (const [flag, value] of [['--bench-samples', flags.benchSamples], ['--bench-batches', flags.benchBatches]] as const) {
        if (!(value >= 1 && value <= MAX_BENCH_RUNS)) throw new UserError(`${flag}: must be between 1 and ${MAX_BENCH_RUNS}`);
      }
      // An empty path (`--data-dir "$DIR"` with DIR unset) read as "cannot create  (no such file or directory)".
      for (const [flag, value] of [['--data-dir', flags.dataDir], ['--config', flags.config]] as const) {
        if (value.trim() === '') throw new UserError(`${flag}: empty (was the variable it was given from unset?); give a path`);
      }
      if (flags.httpPort < 0 || flags.httpPort > 65535) throw new UserError('--http-port: must be 0..65535');
      if (!(flags.downloadIdleSeconds >= 1 && flags.downloadIdleSeconds <= 3600)) throw new UserError('--download-idle-seconds: must be between 1 and 3600');
      // Above any field device's link, every download would be cut off (a typo such as 1e12).
      if (!(flags.downloadMinRate >= 0 && flags.downloadMinRate <= MAX_DOWNLOAD_MIN_RATE)) {
        throw new UserError(`--download-min-rate: must be between 0 and ${MAX_DOWNLOAD_MIN_RATE} bytes per second (0 = no minimum)`);
      }
      // Before the broker is dialled or the data dir made: a host it cannot listen on fails only then.
      await checkListenHost(flags.httpHost, '--http-host');
      const holdout = flags.holdout ? await underFlag('--holdout', () => Holdout.fromFile(flags.holdout!, flags.label!)) : undefined;
      const config = await loadAgentConfig(flags.config);
      // An existing data dir is used as it is (a full disk must not keep the agent from serving
      // its model); a new one is created where directories can be (mkdir loops forever under /proc).
      if (!(await stat(flags.dataDir).then((info) => info.isDirectory(), () => false))) await ensureWritableDirectory(flags.dataDir, '--data-dir');
      // Before anything in the data dir is read or written: two agents on one data dir would
      // overwrite each other's slots, state file and outbox. Held until the agent stops.
      const lock = await lockAgentDataDir(flags.dataDir);
      try {
        await runAgent(flags, config, holdout, lock);
      } finally {
        lock.release();
      }
    });
}

/**
 * Who besides the agent can read its config, from the file's mode and group, or null: others
 * (any "other" bit), or a group that is not the agent's primary one. The agent's own group (0640
 * with it, as a container's mounted config is given) is the agent; a supplementary group the
 * agent is in (users, adm) may have many other members, and is warned about.
 */
export function configExposure(mode: number, gid: number, agentGroups: readonly number[] = processGroups()): { who: string; mode: string; fix: string } | null {
  const shown = (mode & 0o777).toString(8).padStart(4, '0');
  if ((mode & 0o007) !== 0) return { who: 'can be read by other users', mode: shown, fix: 'chmod 600 it' };
  if ((mode & 0o070) !== 0 && !agentGroups.includes(gid)) {
    return { who: `can be read by group ${gid}, which is not the agent's own group`, mode: shown, fix: `chown it to the agent's user and chmod 600 it, or give it the agent's own group (gid ${agentGroups[0]})` };
  }
  return null;
}

function processGroups(): number[] {
  // Not on Windows: there every mode bit is a fiction, and the check passes.
  if (typeof process.getgid !== 'function') return [];
  // The primary group alone: a supplementary one (users, adm) may have many other members.
  return [process.getgid()];
}

async function runAgent(flags: AgentFlags, config: AgentConfig, holdout: Holdout | undefined, lock: DataDirLock): Promise<void> {
  // Loaded here, so other commands do not pay for onnxruntime, mqtt and express at startup.
  const [{ Agent, NO_HOLDOUT_EVIDENCE }, { connectMqtt }, { OrtSessionCache }] = await Promise.all([import('./agent.ts'), import('./mqtt-link.ts'), import('./session-cache.ts')]);
  const logger = createLogger('agent');
  if (lock.withoutFile !== undefined) {
    logger.warn({ dataDir: flags.dataDir, err: lock.withoutFile }, 'the data dir\'s disk takes no writes: running without its lock file (the agent still refuses a second agent on this device); models, assignments and reports wait for room');
  }
  // The config holds the device's broker password and API token: another user who reads it is the device.
  const exposed = await stat(flags.config).then((info) => configExposure(info.mode, info.gid), () => null);
  if (exposed !== null) {
    logger.warn({ config: flags.config, mode: exposed.mode }, `${flags.config} ${exposed.who} (mode ${exposed.mode}), and it holds this device's broker password and token: ${exposed.fix}`);
  }
  const large = holdout ? largeHoldoutWarning(holdout) : null;
  if (large !== null) logger.warn({ holdout: flags.holdout, bytes: holdout!.bytes, rows: holdout!.rows }, large);
  if (!holdout) logger.warn(`no --holdout given: candidates are installed (and shadow-served, with --shadow-fraction above 0) but not benchmarked, so ${NO_HOLDOUT_EVIDENCE}`);
  const agent = new Agent(
    {
      config,
      dataDir: flags.dataDir,
      holdout,
      shadowFraction: flags.shadowFraction,
      heartbeatIntervalMs: flags.heartbeatSeconds * 1000,
      benchmark: { latencySamples: flags.benchSamples, throughputBatches: flags.benchBatches, batchSize: 64 },
      downloadLimits: { idleTimeoutMs: flags.downloadIdleSeconds * 1000, minBytesPerSecond: flags.downloadMinRate },
    },
    { connector: connectMqtt, sessions: new OrtSessionCache(), clock: () => new Date(), logger },
  );
  await agent.start().catch(async (error: unknown) => {
    // Refused (a config that trusts another server's key than its models'): stopped, as below, so the process ends.
    if (error instanceof UserError) {
      await agent.stop();
      throw error;
    }
    if (!isSystemError(error)) throw error;
    // A data dir the agent cannot use (a file where a directory belongs, no permission, a full disk).
    await agent.stop();
    throw new UserError(`cannot use the data dir ${flags.dataDir}: ${describeDataDirError(error)}`);
  });
  const server = await new Promise<import('node:http').Server>((resolve, reject) => {
    const listening = createDeviceHttpServer(agent.app, DEVICE_HTTP_LIMITS, (status, path) => countRefusal(agent.metrics, status, path));
    listening.once('error', reject).listen(flags.httpPort, flags.httpHost, () => resolve(listening));
  }).catch(async (error: unknown) => {
    await agent.stop(); // else the MQTT connection keeps the process alive after the error
    throw new UserError(`--http-port: cannot listen on ${flags.httpHost.includes(':') ? `[${flags.httpHost}]` : flags.httpHost}:${flags.httpPort} (${errorMessage(error)})`);
  });
  const port = (server.address() as AddressInfo).port;
  const underway = responsesUnderway(server);
  // Listening before the ready line: a supervisor (or a test) may stop the agent as soon as it reads it.
  const stopRequested = new Promise<void>((resolve) => {
    const offSignals = onStopSignals(() => {
      offSignals(); // a second Ctrl-C ends the process at once
      resolve();
    });
  });
  const active = agent.slots.active;
  // A service from here on: a ready line that cannot be written (stdout on a full disk) does not end it.
  goOnWhenOutputFails();
  process.stdout.write(`agent ready device=${config.deviceId} http=${port} active=${active ? `${active.model}@${active.version}` : 'none'}\n`);
  await stopRequested;
  logger.info('shutting down');
  // No new connections; requests being answered (or still sending their body) are answered within
  // a grace period before their connections are cut: a restart must not reset a request the device took.
  const closed = new Promise((resolve) => server.close(resolve));
  underway.closeAfterAnswer();
  server.closeIdleConnections();
  const answered = await Promise.race([closed.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), HTTP_STOP_GRACE_MS).unref())]);
  if (!answered) {
    logger.warn({ graceMs: HTTP_STOP_GRACE_MS }, `requests still under way ${HTTP_STOP_GRACE_MS / 1000} s after the stop were cut off`);
    server.closeAllConnections();
    await closed;
  }
  await agent.stop();
}

/** How long a stopping agent waits for the device API's requests under way before cutting them off. */
const HTTP_STOP_GRACE_MS = 5_000;

/**
 * The device API's responses not finished yet. closeAfterAnswer() makes each of them, and any
 * request still to come on a connection kept open, close its connection once answered (else
 * keep-alive holds the connection for its own timeout, and the stop waits that long for nothing).
 */
function responsesUnderway(server: import('node:http').Server): { closeAfterAnswer(): void } {
  const open = new Set<import('node:http').ServerResponse>();
  let closing = false;
  server.on('request', (_request, response: import('node:http').ServerResponse) => {
    if (closing) response.shouldKeepAlive = false;
    open.add(response);
    response.once('close', () => open.delete(response));
  });
  return {
    closeAfterAnswer() {
      closing = true;
      for (const response of open) if (!response.headersSent) response.shouldKeepAlive = false;
    },
  };
}
