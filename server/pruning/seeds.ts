import { createHash } from 'node:crypto';

/**
 * The seed of one random stream of a run: the first 31 bits of sha256 over the run's `--seed` and
 * the stream's name, never 0 (which tfjs reads as "no seed" and replaces with Math.random).
 *
 * Streams are derived by hashing, not by adding offsets to the seed: with `seed + layer`, seed 1's
 * second and third hidden layers started from exactly the weights of seed 2's first and second
 * (same shapes, same numbers), and seed 1's retraining shuffled as seed 2's general model did, so
 * runs at consecutive seeds were not independent and their spread was understated.
 */
export function streamSeed(seed: number, stream: string): number {
  const bits = createHash('sha256').update(`fleetprune:${stream}:${seed}`).digest().readUInt32BE(0) & 0x7fffffff;
  return bits === 0 ? 1 : bits;
}

/** The named streams of one ODF2NNA run; each training starts from one and shuffles with another. */
export function runSeeds(seed: number) {
  return {
    generalInit: streamSeed(seed, 'general/init'),
    generalShuffle: streamSeed(seed, 'general/shuffle'),
    retrainShuffle: streamSeed(seed, 'retrain/shuffle'),
    scratchInit: streamSeed(seed, 'scratch/init'),
    scratchShuffle: streamSeed(seed, 'scratch/shuffle'),
  };
}
