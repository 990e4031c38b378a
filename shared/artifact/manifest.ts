import { z } from 'zod';
import { sha256Hex } from './digest.ts';

/** The files every format-1 artifact ships, relative to the artifact directory. */
export const ONNX_FILE = 'model.onnx';
export const TFJS_DIR = 'tfjs';
/** The tfjs Layers model files, inside TFJS_DIR. */
export const TFJS_MODEL_JSON = 'model.json';
export const TFJS_WEIGHTS_BIN = 'weights.bin';
/**
 * The standardization around the tfjs model (which works on standardized inputs and, for
 * regression, standardized targets), inside TFJS_DIR. Written by every artifact since it was
 * added; an artifact without it still verifies, but its tfjs model cannot be run on raw features.
 */
export const TFJS_SCALING_JSON = 'scaling.json';
export const MANIFEST_FILE = 'manifest.json';
/** The largest manifest.json read (a download, a file on disk); real ones are a few KiB, a model of 10,000 features some hundreds. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
const REQUIRED_FILES = [ONNX_FILE, `${TFJS_DIR}/${TFJS_MODEL_JSON}`, `${TFJS_DIR}/${TFJS_WEIGHTS_BIN}`];

const SHA256_HEX = /^[0-9a-f]{64}$/;
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * A path that stays inside the artifact directory on every platform: posix separators,
 * segments of [A-Za-z0-9._-] only, none of them empty, `.` or `..` (so never absolute).
 */
export function isSafeRelativePath(path: string): boolean {
  return path.split('/').every((segment) => PATH_SEGMENT.test(segment) && segment !== '.' && segment !== '..');
}

/** Scores as the pruning measures them: accuracy a share in [0, 1], MSE not negative, R² at most 1 (unbounded below). */
const MetricsSchema = z.strictObject({
  accuracy: z.number().min(0, 'must be between 0 and 1 (a share, not a percentage)').max(1, 'must be between 0 and 1 (a share, not a percentage)').optional(),
  mse: z.number().nonnegative('must not be negative').optional(),
  r2: z.number().max(1, 'must be at most 1').optional(),
});

const FileEntrySchema = z.strictObject({
  sha256: z.string().regex(SHA256_HEX, 'must be 64 lowercase hex digits'),
  bytes: z.number().int().nonnegative(),
});

const FilesSchema = z.record(z.string(), FileEntrySchema).superRefine((files, ctx) => {
  for (const path of Object.keys(files)) {
    if (!isSafeRelativePath(path)) {
      ctx.addIssue({ code: 'custom', message: `unsafe path ${JSON.stringify(path)} (a relative path of segments of A-Z a-z 0-9 . _ -, separated by /, none of them . or ..)` });
    }
  }
  for (const path of REQUIRED_FILES) {
    if (!(path in files)) ctx.addIssue({ code: 'custom', message: `must list ${path}` });
  }
});

/**
 * manifest.json of a model artifact. Objects are strict (unknown keys are rejected) and nothing
 * is transformed, so a parsed manifest has exactly the content that was signed.
 */
const ManifestObject = z.strictObject({
  formatVersion: z.literal(1, { error: 'must be 1: the only manifest format this fleetprune reads (an artifact from a newer fleetprune? upgrade this one)' }),
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -'),
  version: z.string().min(1).optional(),
  createdAt: z.iso.datetime(),
  task: z.enum(['classification', 'regression']),
  features: z.array(z.string()).min(1),
  labels: z.array(z.string()),
  labelName: z.string(),
  architecture: z.strictObject({
    layers: z.array(z.number().int().positive()).min(1),
    inputs: z.number().int().positive(),
    params: z.number().int().nonnegative(),
    flopsPerSample: z.number().int().nonnegative(),
    activations: z.array(z.string()),
  }),
  lineage: z.strictObject({
    parentSha256: z.string().regex(SHA256_HEX, 'must be 64 lowercase hex digits').nullable(),
    epsilon: z.number().nullable(),
    epsilonMode: z.enum(['relative', 'absolute']).nullable(),
    dataFingerprint: z.string(),
    method: z.string().min(1),
    seed: z.number().int().nullable(),
  }),
  metrics: z.strictObject({ test: MetricsSchema, validation: MetricsSchema.optional() }),
  files: FilesSchema,
  signature: z
    .strictObject({
      algorithm: z.literal('ed25519'),
      keyId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits'),
      value: z.base64(),
    })
    .optional(),
});

export const ManifestSchema = ManifestObject.superRefine(checkConsistency);

const ACTIVATIONS = new Set(['relu', 'softmax', 'linear']);

/**
 * What a manifest says about its model must agree with itself: a device maps named features to
 * input columns and output columns to labels by these lists, and the registry and dashboard show
 * the sizes. A signed manifest that contradicts itself (a feature named twice, more labels than
 * outputs, a parameter count its layers do not add up to) is refused wherever it is parsed.
 */
function checkConsistency(manifest: z.output<typeof ManifestObject>, ctx: z.RefinementCtx): void {
  const problem = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const feature = firstRepeated(manifest.features);
  if (feature !== undefined) problem(['features'], `names ${JSON.stringify(feature.slice(0, 100))} more than once`);
  const label = firstRepeated(manifest.labels);
  if (label !== undefined) problem(['labels'], `names ${JSON.stringify(label.slice(0, 100))} more than once`);
  const { layers, inputs, params, flopsPerSample, activations } = manifest.architecture;
  if (manifest.features.length !== inputs) problem(['architecture', 'inputs'], `is ${inputs}, but the manifest lists ${manifest.features.length} features`);
  const outputs = layers.at(-1)!;
  if (manifest.task === 'classification') {
    if (manifest.labels.length < 2) problem(['labels'], `a classifier needs at least two labels (got ${manifest.labels.length})`);
    else if (manifest.labels.length !== outputs) problem(['labels'], `lists ${manifest.labels.length} labels, but the output layer has ${outputs} units`);
  } else {
    if (manifest.labels.length !== 0) problem(['labels'], `must be empty for a regression model (got ${manifest.labels.length})`);
    if (outputs !== 1) problem(['architecture', 'layers'], `a regression model has one output unit (got ${outputs})`);
  }
  if (activations.length !== layers.length) problem(['architecture', 'activations'], `lists ${activations.length} activations for ${layers.length} layers`);
  const unknown = activations.find((activation) => !ACTIVATIONS.has(activation));
  if (unknown !== undefined) problem(['architecture', 'activations'], `${JSON.stringify(unknown.slice(0, 100))} is not one of relu, softmax, linear`);
  let width = inputs;
  let expectedParams = 0;
  let expectedFlops = 0;
  for (const units of layers) {
    expectedParams += width * units + units;
    expectedFlops += 2 * width * units + units;
    width = units;
  }
  if (params !== expectedParams) problem(['architecture', 'params'], `is ${params}, but layers ${JSON.stringify(layers)} on ${inputs} inputs hold ${expectedParams}`);
  if (flopsPerSample !== expectedFlops) problem(['architecture', 'flopsPerSample'], `is ${flopsPerSample}, but layers ${JSON.stringify(layers)} on ${inputs} inputs take ${expectedFlops}`);
  checkEpsilon(manifest.lineage, problem);
}

/**
 * The pruning threshold of the lineage, by the rules `fleetprune prune` applies to --epsilon
 * (server/pruning/options.ts): ε and its mode both given (a pruned model) or both null (one not
 * pruned); a relative ε in (0, 1), an absolute one above 0 and finite.
 */
function checkEpsilon({ epsilon, epsilonMode }: { epsilon: number | null; epsilonMode: 'relative' | 'absolute' | null }, problem: (path: (string | number)[], message: string) => void): void {
  if (epsilon === null) {
    if (epsilonMode !== null) problem(['lineage', 'epsilon'], `is null, but lineage.epsilonMode is ${epsilonMode}: give both (a pruned model) or neither`);
  } else if (epsilonMode === null) {
    problem(['lineage', 'epsilonMode'], `is null, but lineage.epsilon is ${epsilon}: give both (a pruned model) or neither`);
  } else if (epsilonMode === 'relative') {
    if (!(epsilon > 0 && epsilon < 1)) problem(['lineage', 'epsilon'], `is ${epsilon}, outside (0, 1), where a relative ε lies`);
  } else if (!(epsilon > 0 && Number.isFinite(epsilon))) {
    problem(['lineage', 'epsilon'], `is ${epsilon}, but an absolute ε is a finite number above 0`);
  }
}

/**
 * The first name that occurs a second time in `names`, else undefined. Linear: a manifest may
 * list hundreds of thousands of names (indexOf per name took the server 30 s for 200,000).
 */
function firstRepeated(names: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}

export type Manifest = z.infer<typeof ManifestSchema>;
export type UnsignedManifest = Omit<Manifest, 'signature'>;

/**
 * Deterministic JSON: object keys sorted (by UTF-16 code units) at every depth, no whitespace,
 * keys whose value is undefined left out (as JSON.stringify does).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const members = Object.keys(record)
      .sort()
      .filter((key) => record[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The exact text the signature covers: the canonical JSON of the manifest without `signature`. */
export function signedContent(manifest: UnsignedManifest | Manifest): string {
  const { signature: _signature, ...unsigned } = manifest as Manifest;
  return canonicalJson(unsigned);
}

/** The artifact's identity (lineage.parentSha256, registry keys): SHA-256 hex of its signed content. */
export function artifactId(manifest: UnsignedManifest | Manifest): string {
  return sha256Hex(signedContent(manifest));
}
