import type { ProgressEvent } from '../pruning/odf2nna.ts';
import { FINISHED_JOB_STATES, type JobRecord } from '../store/repositories/jobs-repository.ts';
import type { JobEvent, JobEvents } from './job-events.ts';

/** How often a watcher re-reads a job that another server runs (its live events stay there). */
export const REMOTE_WATCH_POLL_MS = 1000;
/**
 * How often a watcher re-reads a job of this server: its live events say everything this server
 * does to it, but another server sharing the database may end it (its lease reaper, while this
 * one was cut off from the database), and no event here says so.
 */
export const LOCAL_WATCH_POLL_MS = 5000;

export interface JobWatchSource {
  readonly events: JobEvents;
  /** The job as stored; throws when there is none. */
  get(id: string): Promise<JobRecord>;
  /** This server (--node-id): its own jobs' events are live here. */
  readonly node: string;
  readonly pollMs?: number;
  readonly localPollMs?: number;
}

/**
 * Calls `listener` with the job's current state, then every change until the job finishes (then
 * `onEnd`). Returns the unsubscribe function. A job of this server is followed through its live
 * events; one that another server runs (several servers share a PostgreSQL database) is polled
 * from the store, since that server's events never reach this one. A job of this server is
 * polled too, less often: another server may end it.
 */
export async function watchJob(source: JobWatchSource, id: string, listener: (event: JobEvent) => void, onEnd: () => void): Promise<() => void> {
  const pending: JobEvent[] = [];
  let replayed = false;
  let ended = false;
  let timer: NodeJS.Timeout | undefined;
  const stop = () => {
    ended = true;
    clearTimeout(timer);
    unsubscribe();
  };
  const deliver = (event: JobEvent) => {
    if (ended) return;
    listener(event);
    if (event.type === 'state' && isFinished(event.job.state)) {
      stop();
      onEnd();
    }
  };
  const unsubscribe = source.events.subscribe(id, (event) => (replayed ? deliver(event) : pending.push(event)));
  let job: JobRecord;
  try {
    job = await source.get(id);
  } catch (error) {
    unsubscribe();
    throw error;
  }
  deliver({ type: 'state', jobId: id, job });
  replayed = true;
  for (const event of pending) deliver(event);
  if (!ended) {
    const local = job.node === source.node;
    const pollMs = local ? (source.localPollMs ?? LOCAL_WATCH_POLL_MS) : (source.pollMs ?? REMOTE_WATCH_POLL_MS);
    let last = job;
    const poll = async () => {
      try {
        const now = await source.get(id);
        // A job of this server: its live events are ahead of what is stored (progress is saved
        // every half second at most), so the store tells only an end written elsewhere.
        if (!local && JSON.stringify(now.progress) !== JSON.stringify(last.progress) && now.progress !== null) {
          deliver({ type: 'progress', jobId: id, progress: now.progress as ProgressEvent });
        }
        if (now.state !== last.state && (!local || isFinished(now.state))) deliver({ type: 'state', jobId: id, job: now });
        last = now;
      } catch {
        // The store did not answer this time (a connection lost for a moment): the next poll tries again.
      }
      if (!ended) timer = setTimeout(() => void poll(), pollMs);
    };
    timer = setTimeout(() => void poll(), pollMs);
  }
  return stop;
}

/** Succeeded, failed or cancelled: the job never changes again. */
export function isFinished(state: JobRecord['state']): boolean {
  return FINISHED_JOB_STATES.includes(state);
}
