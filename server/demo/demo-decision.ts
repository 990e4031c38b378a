import type { RolloutDetail } from '../rollout/rollout-views.ts';
import { waitFor, type RestClient } from './rest-client.ts';

/** A pause of an analysis that had too few device reports to compare at all. */
const TOO_FEW_SAMPLES = /too few samples/;

export interface DemoDecisionOptions {
  /** How long the demo waits for the devices' reports before it resumes a pause for too few of them. */
  resumeAfterMs?: number;
  /** Resumes for too few reports before the demo gives up and rolls back. */
  maxResumes?: number;
  /** How long one rollout may take to be decided (or paused). */
  timeoutMs?: number;
  /** How often the rollout is read while the demo waits (default 1 s). */
  pollMs?: number;
}

export interface DemoDecision {
  /** The rollout once terminal. */
  detail: RolloutDetail;
  /** Set when the demo rolled an inconclusive pilot back: what was inconclusive. */
  inconclusive: string;
}

/**
 * Waits for a demo rollout to be decided, answering its inconclusive pauses as a cautious
 * operator would:
 * - paused because too few devices had reported yet (a slow or busy machine: the pilot was still
 *   downloading and benchmarking the candidate at the first measurement): wait, then resume, which
 *   runs the analysis again, up to `maxResumes` times;
 * - paused on evidence that is there but not conclusive (a difference that is not significant):
 *   roll back.
 */
export async function decideDemoRollout(api: RestClient, id: string, say: (line: string) => void, options: DemoDecisionOptions = {}): Promise<DemoDecision> {
  const resumeAfterMs = options.resumeAfterMs ?? 3000;
  const maxResumes = options.maxResumes ?? 3;
  let resumes = 0;
  let answered = -1; // the revision of the pause the demo last resumed: it waits for a newer state
  for (;;) {
    const detail = await waitFor(
      `rollout ${id} to be decided`,
      async () => {
        const rollout = await api.get<RolloutDetail>(`/rollouts/${id}`);
        const waitsForHuman = rollout.pause?.reason === 'inconclusive' || rollout.pause?.reason === 'unreachable';
        return rollout.terminal || (rollout.phase === 'Paused' && waitsForHuman && rollout.revision > answered) ? rollout : undefined;
      },
      options.timeoutMs ?? 240_000,
      options.pollMs ?? 1000,
    );
    if (detail.terminal) return { detail, inconclusive: '' };
    const message = detail.pause!.message;
    if (TOO_FEW_SAMPLES.test(message) && resumes < maxResumes) {
      resumes += 1;
      say(`rollout ${id}: paused with too few device reports yet; resuming in ${resumeAfterMs / 1000} s, once the pilot has benchmarked the candidate (${resumes} of ${maxResumes})`);
      await new Promise((resolve) => setTimeout(resolve, resumeAfterMs));
      answered = detail.revision;
      await api.post(`/rollouts/${id}/resume`);
      continue;
    }
    // Too little evidence either way (or no pilot device reachable): the controller waits for a
    // human. The demo answers as a cautious operator would, so the next rollout can start.
    const unreachable = detail.pause!.reason === 'unreachable';
    const inconclusive = unreachable ? `unreachable pilot (${message}); rolled back by the demo` : inconclusiveOutcome(message);
    say(`rollout ${id}: paused as ${unreachable ? 'its pilot is unreachable' : 'inconclusive'}; rolling it back as an operator would`);
    await api.post(`/rollouts/${id}/rollback?reason=${encodeURIComponent(`${unreachable ? 'unreachable' : 'inconclusive'} pilot (demo operator)`)}`);
    const rolledBack = await waitFor(`rollout ${id} to roll back`, async () => {
      const rollout = await api.get<RolloutDetail>(`/rollouts/${id}`);
      return rollout.terminal ? rollout : undefined;
    }, 60_000, Math.min(options.pollMs ?? 500, 500));
    return { detail: rolledBack, inconclusive };
  }
}

/**
 * The outcome of a pilot the demo rolled back as inconclusive: the pause's message without its
 * advice to the human it waited for (resume, promote, rollback), which the demo has answered.
 */
export function inconclusiveOutcome(pauseMessage: string): string {
  return `inconclusive (${pauseMessage.replace(/; waiting for a human \([^)]*\)(?=:)/, '')}); rolled back by the demo`;
}
