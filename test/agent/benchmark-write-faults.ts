import type { TestContext } from 'node:test';
import type { Agent } from '../../agent/agent.ts';
import { SlotStateFile, type SlotState } from '../../agent/slot-state.ts';

const carriesBenchmarkOutcome = (state: SlotState) =>
  state.unsentReports.some((report) => report.kind === 'benchmark' || (report.kind === 'assignment' && report.outcome === 'benchmark-failed'));

/**
 * Fails the state writes that would commit a benchmark's outcome (its report, or a benchmark-failed
 * answer) while `failing(attempt)` says so, with `code` (a full disk, or an I/O error); counts them.
 */
export function failBenchmarkWrites(t: TestContext, code: 'ENOSPC' | 'EIO', failing: (attempt: number) => boolean): { attempts: () => number } {
  let attempts = 0;
  const save = SlotStateFile.prototype.save;
  SlotStateFile.prototype.save = async function (this: SlotStateFile, next: SlotState) {
    if (carriesBenchmarkOutcome(next) && !carriesBenchmarkOutcome(this.state) && failing(++attempts)) {
      const message = code === 'ENOSPC' ? 'ENOSPC: no space left on device, write' : 'EIO: i/o error, write';
      throw Object.assign(new Error(message), { code, errno: code === 'ENOSPC' ? -28 : -5, syscall: 'write' });
    }
    return save.call(this, next);
  };
  t.after(() => (SlotStateFile.prototype.save = save));
  return { attempts: () => attempts };
}

/** fleetprune_agent_benchmarks_total by result, the results counted so far only. */
export async function benchmarkCounts(agent: Agent): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const value of (await agent.metrics.benchmarks.get()).values) if (value.value > 0) counts[String(value.labels.result)] = value.value;
  return counts;
}
