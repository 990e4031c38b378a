import { z } from 'zod';
import { UserError, zodIssueMessage } from '../../shared/util/errors.ts';
import { parseDecimal } from '../../shared/util/numbers.ts';
import { DeviceIdSchema } from '../../shared/protocol/payloads.ts';
import { ModelNameSchema } from '../registry/names.ts';
import { ConditionSyntaxError } from '../analysis/condition/condition-tokenizer.ts';
import { parseCondition, type ConditionNode, type ParsedCondition } from '../analysis/condition/condition-parser.ts';
import { conditionUses } from '../analysis/condition/condition-evaluator.ts';
import { DEFAULT_ANALYSIS_TEMPLATES } from '../analysis/default-templates.ts';
import {
  AnalysisTemplateSchema,
  ArgSchema,
  DEFAULT_CONFIDENCE,
  DEFAULT_RELATIVE_MIN_SAMPLES,
  DurationSchema,
  METRIC_DEFAULTS,
  MetricSchema,
  PROVIDER_KINDS,
  RELATIVE_DEFAULTS,
  type AnalysisMetric,
  type AnalysisTemplateInput,
  type MetricInput,
  type MetricSource,
} from '../analysis/metric-definition.ts';
import { formatDuration, parseDuration } from '../../shared/util/duration.ts';
import { ARG_REFERENCE, renderQuery, strayPlaceholder } from '../analysis/query-template.ts';
import { builtinQueryProblem } from '../metricproviders/builtin/builtin-query-check.ts';
import { LabelSelectorSchema, type LabelSelector } from './label-selector.ts';
import { MAX_SPEC_BYTES, readSpecDocument } from './spec-document.ts';
import { printable } from './operator-text.ts';

/**
 * The rollout spec (YAML or JSON): which model version goes where, in which steps, decided by
 * which analysis. Validation is strict and every error names its field, e.g.
 * `steps[2].analysis.metrics[0].successCondition: unknown name "resutl" at column 1`.
 * See docs/rollout-spec.md.
 */

/** Arguments every analysis gets from the rollout, on top of the templates' and the step's. */
export const BUILTIN_ARGS = ['rollout', 'model', 'candidateVersion', 'cohort', 'cohortSize', 'step', 'fleet'] as const;

const Version = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  // The CLI's MODEL@VERSION is easy to carry over: "wine@2" was looked up as version "wine@2" of the model.
  .superRefine((value, ctx) => {
    if (value.includes('@')) ctx.addIssue({ code: 'custom', message: `must be a version alone, such as "${value.slice(value.lastIndexOf('@') + 1) || '2'}": the model is the spec's \`model\`, not part of the version` });
  });

const AnalysisStepSchema = z.strictObject({
  templates: z.array(z.strictObject({ templateName: z.string().min(1, 'must not be empty') })).optional(),
  metrics: z.array(MetricSchema).optional(),
  args: z.array(ArgSchema).optional(),
});

/**
 * The most steps a spec may list. Steps that add no device (a weight repeated) complete at once,
 * each entering the next: thousands of them overflowed the stack and wedged the rollout.
 */
export const MAX_STEPS = 1000;

const STEP_KINDS = ['setWeight', 'devices', 'selector', 'pause', 'analysis'] as const;
const StepSchema = z
  .strictObject({
    setWeight: z.number().gt(0, 'must be > 0').max(100, 'must be ≤ 100').optional(),
    devices: z.array(DeviceIdSchema).min(1, 'must list at least one device').optional(),
    selector: LabelSelectorSchema.optional(),
    pause: z.strictObject({ duration: DurationSchema.optional() }).optional(),
    analysis: AnalysisStepSchema.optional(),
  })
  .superRefine((step, ctx) => {
    const kinds = STEP_KINDS.filter((kind) => step[kind] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({ code: 'custom', message: `a step has exactly one of ${STEP_KINDS.join(', ')}; found ${kinds.length === 0 ? 'none' : kinds.join(', ')}` });
    }
  });

const OfflineSchema = z.strictObject({
  /** Wait before the first retry of an offline device; doubles per attempt. */
  initialBackoff: DurationSchema.optional(),
  maxBackoff: DurationSchema.optional(),
  /** Delivery attempts before the device counts as unreachable. */
  maxAttempts: z.number().int('must be an integer').min(1, 'must be ≥ 1').max(100, 'must be ≤ 100').optional(),
});

export const RolloutSpecInputSchema = z.strictObject({
  apiVersion: z.literal('fleetprune/v1').optional(),
  kind: z.literal('Rollout').optional(),
  model: ModelNameSchema,
  candidateVersion: Version,
  target: LabelSelectorSchema.optional(),
  steps: z.array(StepSchema).min(1, 'must list at least one step').max(MAX_STEPS, `must list at most ${MAX_STEPS} steps`),
  analysisTemplates: z.array(AnalysisTemplateSchema).optional(),
  offline: OfflineSchema.optional(),
});
export type RolloutSpecInput = z.infer<typeof RolloutSpecInputSchema>;

export type RolloutStep =
  | { readonly kind: 'setWeight'; readonly percent: number }
  | { readonly kind: 'devices'; readonly deviceIds: readonly string[] }
  | { readonly kind: 'selector'; readonly selector: LabelSelector }
  | { readonly kind: 'pause'; readonly durationMs?: number }
  | { readonly kind: 'analysis'; readonly metrics: readonly AnalysisMetric[] };

export interface OfflinePolicy {
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxAttempts: number;
}

/** A validated, resolved spec: defaults applied, templates expanded, conditions parsed. JSON-serializable. */
export interface RolloutSpec {
  readonly model: string;
  readonly candidateVersion: string;
  readonly target: LabelSelector;
  readonly steps: readonly RolloutStep[];
  readonly offline: OfflinePolicy;
}

export const OFFLINE_DEFAULTS: OfflinePolicy = { initialBackoffMs: 5_000, maxBackoffMs: 60_000, maxAttempts: 5 };

export interface SpecIssue {
  readonly path: string;
  readonly message: string;
  /** The value refused, for a value of the wrong type (the YAML hint reads it). */
  readonly input?: unknown;
}

export class RolloutSpecError extends UserError {
  readonly issues: readonly SpecIssue[];
  constructor(issues: readonly SpecIssue[], source?: string) {
    // Escaped to one line: issues quote the spec's own text (an unknown key, a template name), which may hold newlines or escape sequences.
    super(printable(`${source ? `${source}: ` : ''}invalid rollout spec: ${issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')}`));
    this.name = 'RolloutSpecError';
    this.issues = issues;
  }
}

/** `['steps', 2, 'analysis']` → `steps[2].analysis`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`;
    else text += text === '' ? String(part) : `.${String(part)}`;
  }
  return text === '' ? '(spec)' : text;
}

/** Parses YAML or JSON text (JSON is YAML) and validates it; see readSpecDocument for the limits. */
export function parseRolloutSpec(text: string, source?: string): RolloutSpec {
  const document = readSpecDocument(text, source);
  try {
    return validateRolloutSpec(document, source);
  } catch (error) {
    if (!(error instanceof RolloutSpecError) || isJson(text.replace(/^\uFEFF/, ''))) throw error;
    // YAML reads an unquoted 2 or true as a number or a boolean, where a version or a label value is text.
    throw new RolloutSpecError(error.issues.map((issue) => ({ ...issue, message: `${issue.message}${yamlHint(issue)}` })), source);
  }
}

/** How YAML's reading of a scalar explains a type refused: an unquoted 2 is a number, a quoted one text. */
function yamlHint(issue: SpecIssue): string {
  if (/^must be a string, not a (number|boolean)$/.test(issue.message)) return ' (in YAML, put it in quotes: "2", "true")';
  // Only for text that is a number ("3"): unquoting "fifty" would not help.
  if (/^must be a (whole )?number, not a string$/.test(issue.message) && typeof issue.input === 'string' && Number.isFinite(parseDecimal(issue.input.trim()))) {
    return ` (in YAML, without quotes: ${issue.input.trim()}, not "${issue.input.trim()}")`;
  }
  return '';
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

export function validateRolloutSpec(document: unknown, source?: string): RolloutSpec {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new RolloutSpecError([{ path: '(spec)', message: 'must be a mapping with model, candidateVersion and steps' }], source);
  }
  const parsed = RolloutSpecInputSchema.safeParse(document, { reportInput: true });
  if (!parsed.success) {
    throw new RolloutSpecError(
      parsed.error.issues.flatMap((issue) =>
        // A key the spec does not know named as a field, as the REST and gRPC refusals name one (not zod's "Unrecognized key").
        issue.code === 'unrecognized_keys'
          ? issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown field' }))
          : [{ path: formatPath(issue.path), message: zodIssueMessage(issue), ...(issue.code === 'invalid_type' ? { input: issue.input } : {}) }],
      ),
      source,
    );
  }
  const issues: SpecIssue[] = [];
  const spec = resolve(parsed.data, issues);
  if (issues.length > 0) throw new RolloutSpecError(issues, source);
  return spec;
}

function resolve(input: RolloutSpecInput, issues: SpecIssue[]): RolloutSpec {
  const templates = new Map<string, { template: AnalysisTemplateInput; path: string }>();
  for (const template of DEFAULT_ANALYSIS_TEMPLATES) templates.set(template.name, { template, path: `(built-in template ${template.name})` });
  const localNames = new Set<string>();
  (input.analysisTemplates ?? []).forEach((template, index) => {
    if (localNames.has(template.name)) issues.push({ path: `analysisTemplates[${index}].name`, message: `duplicate template name "${template.name}"` });
    localNames.add(template.name);
    // A template declaring `cohort` (an Argo habit) would otherwise measure what its default says, not the rollout's devices.
    const declared = new Set<string>();
    (template.args ?? []).forEach((arg, at) => {
      if ((BUILTIN_ARGS as readonly string[]).includes(arg.name)) issues.push({ path: `analysisTemplates[${index}].args[${at}].name`, message: `"${arg.name}" is set by the rollout` });
      // Else the last declaration's default would silently win.
      if (declared.has(arg.name)) issues.push({ path: `analysisTemplates[${index}].args[${at}].name`, message: `duplicate argument "${arg.name}"` });
      declared.add(arg.name);
    });
    templates.set(template.name, { template, path: `analysisTemplates[${index}]` });
  });

  let lastWeight = 0;
  const expansion: Expansion = { chars: 0, exceeded: false };
  const steps: RolloutStep[] = input.steps.map((step, index): RolloutStep => {
    const path = `steps[${index}]`;
    if (step.setWeight !== undefined) {
      if (step.setWeight < lastWeight) issues.push({ path: `${path}.setWeight`, message: `must not be below the previous weight (${lastWeight})` });
      lastWeight = Math.max(lastWeight, step.setWeight);
      return { kind: 'setWeight', percent: step.setWeight };
    }
    if (step.devices !== undefined) {
      const seen = new Set<string>();
      step.devices.forEach((id, at) => {
        if (seen.has(id)) issues.push({ path: `${path}.devices[${at}]`, message: `duplicate device "${id}"` });
        seen.add(id);
      });
      return { kind: 'devices', deviceIds: [...seen] };
    }
    if (step.selector !== undefined) return { kind: 'selector', selector: step.selector };
    if (step.pause !== undefined) {
      if (step.pause.duration === undefined) return { kind: 'pause' };
      return { kind: 'pause', durationMs: checkDuration(parseDuration(step.pause.duration)!, `${path}.pause.duration`, issues) };
    }
    return { kind: 'analysis', metrics: resolveAnalysis(step.analysis!, `${path}.analysis`, templates, issues, expansion, { model: input.model, candidateVersion: input.candidateVersion }) };
  });

  const offline = input.offline ?? {};
  const policy: OfflinePolicy = {
    initialBackoffMs: offline.initialBackoff === undefined ? OFFLINE_DEFAULTS.initialBackoffMs : parseDuration(offline.initialBackoff)!,
    maxBackoffMs: offline.maxBackoff === undefined ? OFFLINE_DEFAULTS.maxBackoffMs : parseDuration(offline.maxBackoff)!,
    maxAttempts: offline.maxAttempts ?? OFFLINE_DEFAULTS.maxAttempts,
  };
  checkDuration(policy.initialBackoffMs, 'offline.initialBackoff', issues);
  checkDuration(policy.maxBackoffMs, 'offline.maxBackoff', issues);
  if (policy.maxBackoffMs < policy.initialBackoffMs) issues.push({ path: 'offline.maxBackoff', message: 'must be ≥ offline.initialBackoff' });

  return { model: input.model, candidateVersion: input.candidateVersion, target: input.target ?? {}, steps, offline: policy };
}

type TemplateTable = ReadonlyMap<string, { template: AnalysisTemplateInput; path: string }>;

/**
 * The most characters of metrics (conditions, queries, arguments, and 32 for the rest of each,
 * which no metric spells in fewer) the analysis steps may resolve to, a template counted at each
 * use: what a spec of MAX_SPEC_BYTES could spell out. A template of 20 metrics used in 1000
 * steps of an 87 KB spec resolved to a spec too large to store, after 7 s and 700 MB.
 */
export const MAX_RESOLVED_ANALYSIS_CHARS = MAX_SPEC_BYTES;

interface Expansion {
  chars: number;
  exceeded: boolean;
}

/** What a metric weighs resolved with `argChars` characters of arguments. */
function metricChars(metric: MetricInput, argChars: number): number {
  const query = metric.provider?.prometheus ?? metric.provider?.builtin;
  const texts = [metric.successCondition, metric.failureCondition, query?.query, query?.baselineQuery, query?.samplesQuery];
  return 32 + argChars + texts.reduce((sum, text) => sum + (text?.length ?? 0), 0);
}

/** Counts `chars` more; false, with one issue for the whole spec, once the total passes the limit. */
function withinExpansion(expansion: Expansion, chars: number, path: string, issues: SpecIssue[]): boolean {
  if (expansion.exceeded) return false;
  expansion.chars += chars;
  if (expansion.chars <= MAX_RESOLVED_ANALYSIS_CHARS) return true;
  expansion.exceeded = true;
  issues.push({ path, message: `the analysis steps resolve to more than ${MAX_RESOLVED_ANALYSIS_CHARS} characters of metrics (a template counts at each use); use templates in fewer steps or make them smaller` });
  return false;
}

function argsChars(args: Iterable<[string, string]>): number {
  let chars = 0;
  for (const [name, value] of args) chars += name.length + value.length;
  return chars;
}

/** The values of the rollout's own arguments already known when the spec is validated. */
type KnownRolloutArgs = Readonly<{ model: string; candidateVersion: string }>;

function resolveAnalysis(step: z.infer<typeof AnalysisStepSchema>, path: string, templates: TemplateTable, issues: SpecIssue[], expansion: Expansion, known: KnownRolloutArgs): AnalysisMetric[] {
  if ((step.templates ?? []).length === 0 && (step.metrics ?? []).length === 0) {
    issues.push({ path, message: 'needs templates or metrics' });
    return [];
  }
  const stepArgs = new Map<string, string>();
  const seenArgs = new Set<string>();
  (step.args ?? []).forEach((arg, index) => {
    if (seenArgs.has(arg.name)) issues.push({ path: `${path}.args[${index}].name`, message: `duplicate argument "${arg.name}"` });
    seenArgs.add(arg.name);
    if (arg.value === undefined) issues.push({ path: `${path}.args[${index}].value`, message: 'a step argument needs a value' });
    else stepArgs.set(arg.name, String(arg.value));
    if ((BUILTIN_ARGS as readonly string[]).includes(arg.name)) issues.push({ path: `${path}.args[${index}].name`, message: `"${arg.name}" is set by the rollout` });
  });

  const metrics: AnalysisMetric[] = [];
  const usedArgs = new Set<string>();
  (step.templates ?? []).forEach((ref, index) => {
    const found = templates.get(ref.templateName);
    if (!found) {
      const known = [...templates.keys()].sort().join(', ');
      issues.push({ path: `${path}.templates[${index}].templateName`, message: `unknown template "${ref.templateName}" (known: ${known})` });
      return;
    }
    const args: Record<string, string> = {};
    for (const declared of found.template.args ?? []) {
      const value = stepArgs.get(declared.name) ?? (declared.value === undefined ? undefined : String(declared.value));
      usedArgs.add(declared.name);
      if (value === undefined) {
        issues.push({ path: `${path}.args`, message: `template "${ref.templateName}" needs argument "${declared.name}"` });
        continue;
      }
      args[declared.name] = value;
    }
    const templateArgChars = argsChars(Object.entries(args));
    const chars = found.template.metrics.reduce((sum, metric) => sum + metricChars(metric, templateArgChars), 0);
    if (!withinExpansion(expansion, chars, `${path}.templates[${index}]`, issues)) return;
    const declared = (found.template.args ?? []).map((arg) => arg.name);
    const builtIn = found.path.startsWith('(');
    found.template.metrics.forEach((metric, at) => {
      const throughStep = `${path}.templates[${index}] ${builtIn ? found.path : `(${found.path})`} metrics[${at}]`;
      if (builtIn) {
        const resolved = resolveMetric(metric, throughStep, args, issues, known, declared);
        if (resolved) metrics.push(resolved);
        return;
      }
      // A spec's own template: a problem a value this step passed makes is named through the step
      // (of the steps that use the template, the one at fault); one of the template's own, once, by
      // the template's path.
      const ownPath = `${found.path}.metrics[${at}]`;
      const own: SpecIssue[] = [];
      const resolved = resolveMetric(metric, ownPath, args, own, known, declared);
      if (resolved) metrics.push(resolved);
      for (const issue of own) {
        const placed = stepArgumentAtFault(issue, metric, stepArgs) ? { ...issue, path: throughStep + issue.path.slice(ownPath.length) } : issue;
        if (!issues.some((other) => other.path === placed.path && other.message === placed.message)) issues.push(placed);
      }
    });
  });
  (step.metrics ?? []).forEach((metric, index) => {
    for (const name of seenArgs) usedArgs.add(name);
    if (!withinExpansion(expansion, metricChars(metric, argsChars(stepArgs)), `${path}.metrics[${index}]`, issues)) return;
    const resolved = resolveMetric(metric, `${path}.metrics[${index}]`, Object.fromEntries(stepArgs), issues, known);
    if (resolved) metrics.push(resolved);
  });
  (step.args ?? []).forEach((arg, index) => {
    if (!usedArgs.has(arg.name)) issues.push({ path: `${path}.args[${index}].name`, message: `no template of this step declares argument "${arg.name}"` });
  });
  const names = new Set<string>();
  for (const metric of metrics) {
    if (names.has(metric.name)) issues.push({ path, message: `two metrics are named "${metric.name}"; metric names must be unique within a step` });
    names.add(metric.name);
  }
  return metrics;
}

/** Stand-ins for the arguments the rollout sets, to parse a query before any rollout runs. */
const BUILTIN_ARG_EXAMPLES: Readonly<Record<(typeof BUILTIN_ARGS)[number], string>> = { rollout: 'r', model: 'm', candidateVersion: 'v', cohort: 'd', cohortSize: '1', step: '0', fleet: 'f' };

/**
 * The builtin provider's queries are checked here (builtinQueryProblem), with their arguments in
 * place: a syntax error, an unsupported construct or a misplaced range selector found only at the
 * first measurement would fail the rollout (and revert its pilot). Prometheus's own queries are
 * left to Prometheus, whose PromQL is larger: the server asks it when a rollout starts (query-preflight.ts).
 */
function checkBuiltinQueries(query: { query: string; baselineQuery?: string; samplesQuery?: string }, args: Record<string, string>, path: string, issues: SpecIssue[]): void {
  const values = { ...BUILTIN_ARG_EXAMPLES, ...args };
  for (const field of ['query', 'baselineQuery', 'samplesQuery'] as const) {
    const text = query[field];
    if (text === undefined) continue;
    const rendered = renderQuery(text, values);
    // An unknown argument or a malformed placeholder, reported already: one issue for one mistake.
    if (new RegExp(ARG_REFERENCE.source).test(rendered) || strayPlaceholder(text) !== null) continue;
    const problem = builtinQueryProblem(rendered);
    if (problem !== null) issues.push({ path: `${path}.${field}`, message: problem });
  }
}

/** The longest duration a spec may ask for (interval, delay, pause, window, backoff): a year. */
export const MAX_SPEC_DURATION_MS = 366 * 24 * 3_600_000;
/** The longest per-query timeout. */
export const MAX_QUERY_TIMEOUT_MS = 10 * 60_000;

/** Durations with hundreds of digits parse to Infinity (stored as null): bound them. */
function checkDuration(ms: number, path: string, issues: SpecIssue[]): number {
  if (!Number.isFinite(ms) || ms > MAX_SPEC_DURATION_MS) issues.push({ path, message: `must be at most ${formatDuration(MAX_SPEC_DURATION_MS)}` });
  return ms;
}

/**
 * Whether a step's argument made `issue` of a template's metric: a condition using an argument the
 * step passed that is no number, or a builtin query (with the step's values in) that does not parse
 * and names one of them.
 */
function stepArgumentAtFault(issue: SpecIssue, metric: MetricInput, stepArgs: ReadonlyMap<string, string>): boolean {
  const used = /^uses argument "([^"]+)"/.exec(issue.message)?.[1];
  if (used !== undefined) return stepArgs.has(used);
  const field = /\.provider\.builtin\.(query|baselineQuery|samplesQuery)$/.exec(issue.path)?.[1] as 'query' | 'baselineQuery' | 'samplesQuery' | undefined;
  const text = field === undefined ? undefined : metric.provider?.builtin?.[field];
  return text !== undefined && [...text.matchAll(ARG_REFERENCE)].some((match) => stepArgs.has(match[1]!));
}

function resolveMetric(metric: MetricInput, path: string, args: Record<string, string>, issues: SpecIssue[], known: KnownRolloutArgs, declared: readonly string[] = []): AnalysisMetric | undefined {
  const before = issues.length;
  const argNames = [...new Set([...BUILTIN_ARGS, ...Object.keys(args), ...declared])];
  const count = metric.count ?? METRIC_DEFAULTS.count;
  const intervalMs = metric.interval === undefined ? undefined : parseDuration(metric.interval)!;
  if (count > 1 && intervalMs === undefined) issues.push({ path: `${path}.interval`, message: `is required when count is more than 1 (count is ${count})` });
  if (intervalMs !== undefined && intervalMs < 1000) issues.push({ path: `${path}.interval`, message: 'must be at least 1s' });
  if (intervalMs !== undefined) checkDuration(intervalMs, `${path}.interval`, issues);
  if (metric.initialDelay !== undefined) checkDuration(parseDuration(metric.initialDelay)!, `${path}.initialDelay`, issues);
  if (metric.consecutiveSuccessLimit !== undefined && metric.consecutiveSuccessLimit > count) {
    issues.push({ path: `${path}.consecutiveSuccessLimit`, message: `${metric.consecutiveSuccessLimit} can never be reached in count ${count} measurements` });
  }

  let source: MetricSource | undefined;
  let hasBaseline = false;
  if (metric.relative && metric.provider) {
    issues.push({ path, message: 'has both relative and provider; a relative check queries the rollout\'s provider itself' });
  } else if (metric.relative) {
    if (metric.successCondition !== undefined || metric.failureCondition !== undefined) {
      issues.push({ path: `${path}.relative`, message: 'a relative check decides by itself; remove successCondition and failureCondition' });
    }
    const defaults = RELATIVE_DEFAULTS[metric.relative.metric];
    source = {
      kind: 'relative',
      metric: metric.relative.metric,
      comparator: metric.relative.comparator ?? defaults.comparator,
      tolerance: metric.relative.tolerance ?? defaults.tolerance,
      toleranceMode: metric.relative.toleranceMode ?? defaults.toleranceMode,
      confidence: metric.relative.confidence ?? DEFAULT_CONFIDENCE,
      windowMs: metric.relative.window === undefined ? intervalMs ?? METRIC_DEFAULTS.relativeWindowMs : parseDuration(metric.relative.window)!,
    };
    if (source.toleranceMode === 'relative' && source.comparator === '>=' && source.tolerance >= 1) {
      // The bound, baseline × (1 − tolerance), is then 0 or less: the check could never fail.
      issues.push({ path: `${path}.relative.tolerance`, message: `a relative tolerance of ${source.tolerance} with >= accepts any value; it must be below 1` });
    }
    if (metric.relative.window !== undefined) {
      if (source.windowMs < 1000) issues.push({ path: `${path}.relative.window`, message: 'must be at least 1s' });
      checkDuration(source.windowMs, `${path}.relative.window`, issues);
    }
  } else if (metric.provider) {
    const kind = PROVIDER_KINDS.find((name) => metric.provider![name] !== undefined)!;
    const query = metric.provider[kind]!;
    for (const field of ['query', 'baselineQuery', 'samplesQuery'] as const) {
      const text = query[field];
      if (text === undefined) continue;
      for (const match of text.matchAll(ARG_REFERENCE)) {
        if (!argNames.includes(match[1]!)) issues.push({ path: `${path}.provider.${kind}.${field}`, message: `unknown argument "{{args.${match[1]}}}" (known: ${argNames.join(', ')})` });
      }
      const stray = strayPlaceholder(text);
      if (stray !== null) issues.push({ path: `${path}.provider.${kind}.${field}`, message: `a malformed placeholder near ${JSON.stringify(stray)} (write {{args.NAME}})` });
    }
    if (kind === 'builtin') checkBuiltinQueries(query, args, `${path}.provider.${kind}`, issues);
    hasBaseline = query.baselineQuery !== undefined;
    source = {
      kind: 'query',
      provider: kind,
      query: query.query,
      ...(query.baselineQuery === undefined ? {} : { baselineQuery: query.baselineQuery }),
      ...(query.samplesQuery === undefined ? {} : { samplesQuery: query.samplesQuery }),
      timeoutMs: query.timeout === undefined ? METRIC_DEFAULTS.queryTimeoutMs : parseDuration(query.timeout)!,
    };
    if (source.timeoutMs <= 0) issues.push({ path: `${path}.provider.${kind}.timeout`, message: 'must be more than 0s' });
    else if (source.timeoutMs > MAX_QUERY_TIMEOUT_MS) issues.push({ path: `${path}.provider.${kind}.timeout`, message: `must be at most ${formatDuration(MAX_QUERY_TIMEOUT_MS)} (a hanging backend must not hold the rollout)` });
    if (metric.successCondition === undefined && metric.failureCondition === undefined) {
      issues.push({ path, message: 'needs successCondition or failureCondition (or both)' });
    }
  } else {
    issues.push({ path, message: 'needs a provider (prometheus or builtin) or a relative check' });
  }

  const conditions: { successCondition?: ParsedCondition; failureCondition?: ParsedCondition } = {};
  for (const field of ['successCondition', 'failureCondition'] as const) {
    const text = metric[field];
    if (text === undefined || metric.relative) continue;
    try {
      const parsed = parseCondition(text, { identifiers: [...argNames, 'baseline', ...argNames.map((name) => `args.${name}`)] });
      // A condition that can never be true or false (`result[0]`, `len(result)`, `x > true`) would
      // make every measurement an Error: the rollout would fail and revert for a typo.
      const mistyped = typeProblem(parsed.ast, 'boolean');
      if (mistyped) issues.push({ path: `${path}.${field}`, message: `${mistyped.message} at column ${mistyped.position + 1}` });
      if (!hasBaseline && conditionUses(parsed, 'baseline')) {
        issues.push({ path: `${path}.${field}`, message: 'uses "baseline" but the provider has no baselineQuery' });
      }
      // Else every measurement would be an Error, and the rollout fail (and revert) for a typo.
      for (const [name, value] of Object.entries(args)) {
        if (!conditionUses(parsed, name) && !conditionUses(parsed, `args.${name}`)) continue;
        if (value.trim() === '' || Number.isNaN(Number(value))) issues.push({ path: `${path}.${field}`, message: `uses argument "${name}", whose value "${value}" is not a number` });
      }
      for (const name of BUILTIN_ARGS) {
        if (!conditionUses(parsed, name) && !conditionUses(parsed, `args.${name}`)) continue;
        const problem = rolloutArgNumberProblem(name, known);
        if (problem) issues.push({ path: `${path}.${field}`, message: `uses argument "${name}", ${problem}` });
      }
      conditions[field] = parsed;
    } catch (error) {
      if (!(error instanceof ConditionSyntaxError)) throw error;
      issues.push({ path: `${path}.${field}`, message: error.message });
    }
  }
  if (issues.length > before || !source) return undefined;
  return {
    name: metric.name,
    ...(intervalMs === undefined ? {} : { intervalMs }),
    initialDelayMs: metric.initialDelay === undefined ? 0 : parseDuration(metric.initialDelay)!,
    count,
    failureLimit: metric.failureLimit ?? METRIC_DEFAULTS.failureLimit,
    inconclusiveLimit: metric.inconclusiveLimit ?? METRIC_DEFAULTS.inconclusiveLimit,
    consecutiveErrorLimit: metric.consecutiveErrorLimit ?? METRIC_DEFAULTS.consecutiveErrorLimit,
    consecutiveSuccessLimit: metric.consecutiveSuccessLimit ?? METRIC_DEFAULTS.consecutiveSuccessLimit,
    minSamples: metric.minSamples ?? (metric.relative ? DEFAULT_RELATIVE_MIN_SAMPLES : METRIC_DEFAULTS.minSamples),
    ...conditions,
    source,
    args,
  };
}

/** Why a condition cannot compare the rollout's argument `name` as a number (every measurement would be an Error), else null. */
function rolloutArgNumberProblem(name: (typeof BUILTIN_ARGS)[number], known: KnownRolloutArgs): string | null {
  switch (name) {
    case 'rollout':
      return "which the rollout sets to its id, not a number";
    case 'cohort':
      return "which the rollout sets to its devices' ids, not a number";
    case 'fleet':
      return "which the rollout sets to its fleet's label (the server's signing key id), not a number";
    case 'model':
    case 'candidateVersion': {
      const value = known[name];
      return value.trim() === '' || Number.isNaN(Number(value)) ? `whose value "${value}" is not a number` : null;
    }
    case 'cohortSize':
    case 'step':
      return null;
  }
}

type ConditionType = 'boolean' | 'number';

/** What a condition node evaluates to: numbers and vectors (result, baseline, arguments) are both numbers here. */
function typeOf(node: ConditionNode): ConditionType {
  switch (node.type) {
    case 'boolean':
      return 'boolean';
    case 'unary':
      return node.operator === '!' ? 'boolean' : 'number';
    case 'binary':
      return ['+', '-', '*', '/', '%'].includes(node.operator) ? 'number' : 'boolean';
    case 'call':
      return node.name === 'all' || node.name === 'any' || node.name === 'isNaN' ? 'boolean' : 'number';
    default:
      return 'number';
  }
}

/**
 * The first place where a condition needs true or false and gets a number, or the reverse, so
 * that evaluating it always throws (see condition-evaluator.ts); undefined when it type-checks.
 */
function typeProblem(node: ConditionNode, wanted: ConditionType, context = 'the condition'): { message: string; position: number } | undefined {
  const actual = typeOf(node);
  if (actual !== wanted) {
    return { message: `${context} needs ${wanted === 'boolean' ? 'true or false (a comparison such as result[0] >= 0.95)' : 'a number'}, but this is ${actual === 'boolean' ? 'true or false' : 'a number'}`, position: node.position };
  }
  switch (node.type) {
    case 'unary':
      return typeProblem(node.operand, node.operator === '!' ? 'boolean' : 'number', `"${node.operator}"`);
    case 'index': {
      const index = node.index.type === 'unary' && node.index.operator === '-' && node.index.operand.type === 'number' ? -node.index.operand.value : node.index.type === 'number' ? node.index.value : undefined;
      if (index !== undefined && (!Number.isInteger(index) || index < 0)) return { message: `index ${index} is not a non-negative integer`, position: node.position };
      return typeProblem(node.target, 'number', 'indexing') ?? typeProblem(node.index, 'number', 'an index');
    }
    case 'binary': {
      const { operator } = node;
      if (operator === '&&' || operator === '||') return typeProblem(node.left, 'boolean', `"${operator}"`) ?? typeProblem(node.right, 'boolean', `"${operator}"`);
      // == and != compare two booleans or two numbers; everything else takes numbers.
      const operands: ConditionType = (operator === '==' || operator === '!=') && typeOf(node.left) === 'boolean' ? 'boolean' : 'number';
      return typeProblem(node.left, operands, `"${operator}"`) ?? typeProblem(node.right, operands, `"${operator}"`);
    }
    case 'call':
      return typeProblem(node.args[0]!, 'number', `${node.name}()`) ?? (node.predicate ? typeProblem(node.predicate, 'boolean', `the ${node.name}() predicate`) : undefined);
    default:
      return undefined;
  }
}
