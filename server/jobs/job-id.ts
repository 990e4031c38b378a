import { z } from 'zod';

/** A job id as the job service makes them (`job-<time>-<random>`); REST and gRPC check ids with it. */
export const JobIdSchema = z.string().regex(/^job-[a-z0-9-]{1,64}$/, 'must be a job id');
