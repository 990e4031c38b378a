import { z } from 'zod';

/**
 * training.json, at the artifact's root: which fleetprune (and which TensorFlow.js backend) trained
 * the model, and with which options. The manifest lists it with its sha256 like every other file,
 * so the signature covers it; it is a file rather than a manifest field so that agents and servers
 * that know no such field (their manifest schema is strict) still take the artifact. An artifact
 * written before it existed has none.
 */
export const TRAINING_FILE = 'training.json';

/** The largest training.json read; a real one is under 2 KiB. */
export const MAX_TRAINING_BYTES = 64 * 1024;

/** A value of an option as it was in effect: the defaults resolved (the batch size the data gave, say). */
const OptionValue = z.union([z.number(), z.string(), z.boolean(), z.null(), z.array(z.number())]);

/** Loose (at the top level and in `tool`): a later fleetprune may record more, and an earlier one still shows what it knows. */
export const TrainingRecordSchema = z.looseObject({
  /** `commit`: the git commit of the checkout it ran from, when it ran from one (every build is version 0.1.0 until a release). */
  tool: z.looseObject({ name: z.string().min(1).max(100), version: z.string().min(1).max(100), commit: z.string().regex(/^[0-9a-f]{40}$/).optional() }),
  backend: z.string().max(100),
  /** The ODF2NNA options in effect (server/pruning/options.ts), named as a prune job's `options` names them, defaults resolved. */
  options: z.record(z.string().max(100), OptionValue),
});

export type TrainingRecord = z.infer<typeof TrainingRecordSchema>;

export function encodeTrainingRecord(record: TrainingRecord): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`);
}

/** The record in `bytes`, or why they are not one (one line). */
export function parseTrainingRecord(bytes: Uint8Array): { record: TrainingRecord } | { problem: string } {
  if (bytes.length > MAX_TRAINING_BYTES) return { problem: `${bytes.length} bytes, more than a training record can be (${MAX_TRAINING_BYTES})` };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { problem: 'not UTF-8 JSON' };
  }
  const parsed = TrainingRecordSchema.safeParse(json);
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    return { problem: `${issue!.path.join('.') || 'record'}: ${issue!.message}` };
  }
  return { record: parsed.data };
}

/** "fleetprune 0.1.0 on wasm: layers 3, units 128, epochs 200, …" for a terminal (`models show`). */
export function describeTrainingRecord(record: TrainingRecord): string {
  const options = Object.entries(record.options)
    .map(([name, value]) => `${name} ${Array.isArray(value) ? value.join(',') : String(value)}`)
    .join(', ');
  const commit = record.tool.commit ? ` (commit ${record.tool.commit.slice(0, 12)})` : '';
  return `${record.tool.name} ${record.tool.version}${commit} on ${record.backend}${options ? `: ${options}` : ''}`;
}
