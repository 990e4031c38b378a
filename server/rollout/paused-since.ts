import { z } from 'zod';

/**
 * A resume's `pausedSince`: the pause it is for, as the rollout's `pause.since` showed it (an ISO
 * time with milliseconds), parsed to ms. The REST query and the gRPC field take the same text.
 */
export const PausedSinceSchema = z
  .string()
  // One reason: a malformed time is not also said to be no real time.
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, { message: 'must be the time the pause began as the rollout showed it (pause.since over REST, pause_since over gRPC), such as 2026-12-07T00:14:43.123Z', abort: true })
  .refine((text) => Number.isFinite(Date.parse(text)), 'must be a real time')
  .transform((text) => Date.parse(text));
