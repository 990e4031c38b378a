import { parentPort } from 'node:worker_threads';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { checkJobData } from './job-data-check.ts';
import type { WorkerReply, WorkerRequest } from '../app/worker-pool.ts';
import type { JobDataCheck, JobDataCheckInput } from './job-data-check.ts';

/** Runs in a worker thread: checks one submitted data set at a time, off the server's event loop. */
function answer({ id, input }: WorkerRequest<JobDataCheckInput>): WorkerReply<JobDataCheck> {
  try {
    return { id, type: 'valid', result: checkJobData(input) };
  } catch (error) {
    if (error instanceof UserError) return { id, type: 'invalid', message: error.message };
    return { id, type: 'error', message: errorMessage(error), stack: (error as Error)?.stack };
  }
}

parentPort!.on('message', (request: WorkerRequest<JobDataCheckInput>) => parentPort!.postMessage(answer(request)));
