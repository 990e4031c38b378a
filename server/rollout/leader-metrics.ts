import { Counter, Gauge, type Registry } from 'prom-client';
import { ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';

/**
 * Whether this server drives the rollouts, and how often it took them over: across the servers
 * sharing a database, the gauges sum to 1 while a leader drives them, and a failover shows as a
 * takeover counted on the new leader. Kept apart from RolloutMetrics, whose series a deposed
 * leader drops.
 */
export class LeaderMetrics {
  readonly #leader: Gauge;
  readonly #takeovers: Counter;

  constructor(registry: Registry) {
    this.#leader = new Gauge({ name: ROLLOUT_METRICS.leader, help: '1 while this server drives the rollouts (the leader, its rollouts recovered), else 0', registers: [registry] });
    this.#takeovers = new Counter({ name: ROLLOUT_METRICS.takeovers, help: 'Takeovers of the rollouts this server finished, the broker side included (its first election included)', registers: [registry] });
    this.#leader.set(0);
  }

  /** The rollouts are recovered: this server drives them (and takes rollout commands). */
  driving(): void {
    this.#leader.set(1);
  }

  /** The takeover is done, the broker side (if any) taken too. */
  tookOver(): void {
    this.#takeovers.inc();
  }

  /** Deposed, stopping, or a takeover that failed: this server drives nothing. */
  stoppedDriving(): void {
    this.#leader.set(0);
  }
}
