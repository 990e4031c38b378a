import { newMessageId } from '../shared/protocol/message-id.ts';
import { TelemetrySchema, type ModelRef, type Telemetry } from '../shared/protocol/payloads.ts';

/** How often an agent sends a heartbeat unless told otherwise. */
export const HEARTBEAT_INTERVAL_MS = 30_000;

/**
 * Builds heartbeat payloads: uptime, process CPU (percent of one core since the previous
 * heartbeat), RSS, the models in the slots, and the run id: random, picked once per builder (one
 * per agent run, as the serving counters it goes with), so the server can tell a restart from
 * counters that merely grew.
 *
 * Uptime and the CPU interval are measured on a monotonic clock: a device's wall clock steps
 * (an NTP correction at boot, a dead RTC battery), and a step backwards made the uptime negative,
 * which the payload schema refuses.
 */
export class HeartbeatBuilder {
  readonly #startedAt: number;
  #lastCpu = process.cpuUsage();
  #lastTick: number;

  /** Milliseconds on a clock that never steps back. */
  readonly monotonic: () => number;
  /** Identifies this agent run in every heartbeat (`runId`). */
  readonly runId: string;
  /** How often the agent sends one (`intervalSeconds`), when it says. */
  readonly intervalMs: number | undefined;

  constructor(
    readonly deviceId: string,
    /** The wall clock, for `sentAt`. */
    readonly clock: () => Date,
    options: { monotonic?: () => number; runId?: string; intervalMs?: number } = {},
  ) {
    this.monotonic = options.monotonic ?? (() => performance.now());
    this.runId = options.runId ?? newMessageId();
    this.intervalMs = options.intervalMs;
    this.#startedAt = this.monotonic();
    this.#lastTick = this.#startedAt;
  }

  /** `assignmentSeq`: the newest assignment's number the agent took (undefined: none yet). */
  build(slots: { active: ModelRef | null; candidate: ModelRef | null; previous: ModelRef | null }, serving: Telemetry['serving'], assignmentSeq?: number): Telemetry {
    const tick = this.monotonic();
    const cpu = process.cpuUsage(this.#lastCpu);
    const wallMicros = Math.max(1, (tick - this.#lastTick) * 1000);
    this.#lastCpu = process.cpuUsage();
    this.#lastTick = tick;
    return TelemetrySchema.parse({
      schema: 1,
      deviceId: this.deviceId,
      sentAt: this.clock().toISOString(),
      uptimeSeconds: Math.max(0, (tick - this.#startedAt) / 1000),
      cpuPercent: (100 * (cpu.user + cpu.system)) / wallMicros,
      rssBytes: process.memoryUsage.rss(),
      ...slots,
      runId: this.runId,
      ...(this.intervalMs !== undefined ? { intervalSeconds: this.intervalMs / 1000 } : {}),
      ...(assignmentSeq !== undefined ? { assignmentSeq } : {}),
      serving,
    });
  }
}
