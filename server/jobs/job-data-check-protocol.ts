import type { JobDataCheck, JobDataCheckInput } from './job-data-check.ts';

/** A check the server thread sends a data-check worker; `id` pairs it with its answer. */
export interface JobDataCheckRequest {
  id: number;
  input: JobDataCheckInput;
}

/** A data-check worker's answer: the summary, the user's mistake (a 400) or a fault of ours. */
export type JobDataCheckReply =
  | { id: number; type: 'valid'; check: JobDataCheck }
  | { id: number; type: 'invalid'; message: string }
  | { id: number; type: 'error'; message: string; stack?: string };
