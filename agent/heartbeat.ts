import { TelemetrySchema, type ModelRef, type Telemetry } from '../shared/protocol/payloads.ts';

/**
 * Builds heartbeat payloads: uptime, process CPU (percent of one core since the previous
 * heartbeat), RSS, and the models in the slots.
 */
export class HeartbeatBuilder {
  readonly #startedAt: number;
  #lastCpu = process.cpuUsage();
  #lastWall: number;

  constructor(
    readonly deviceId: string,
    readonly clock: () => Date,
  ) {
    this.#startedAt = clock().getTime();
    this.#lastWall = this.#startedAt;
  }

  build(slots: { active: ModelRef | null; candidate: ModelRef | null; previous: ModelRef | null }, serving: Telemetry['serving']): Telemetry {
    const now = this.clock().getTime();
    const cpu = process.cpuUsage(this.#lastCpu);
    const wallMicros = Math.max(1, (now - this.#lastWall) * 1000);
    this.#lastCpu = process.cpuUsage();
    this.#lastWall = now;
    return TelemetrySchema.parse({
      schema: 1,
      deviceId: this.deviceId,
      sentAt: new Date(now).toISOString(),
      uptimeSeconds: (now - this.#startedAt) / 1000,
      cpuPercent: (100 * (cpu.user + cpu.system)) / wallMicros,
      rssBytes: process.memoryUsage.rss(),
      ...slots,
      serving,
    });
  }
}
