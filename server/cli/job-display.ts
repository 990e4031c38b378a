import { formatScore } from '../pruning/summary.ts';
import type { PruneSummary } from '../jobs/prune-worker-protocol.ts';
import { printable } from '../rollout/operator-text.ts';
import { formatTable } from './format-table.ts';
import type { GrpcJobRecord } from './json-views.ts';
import { formatParamCut } from '../../shared/model/parameter-cut.ts';

interface JobRequest {
  name?: string;
  label?: string;
  task?: string;
  data?: { csv?: string; path?: string };
  options?: Record<string, unknown>;
}
interface VersionRef {
  model: string;
  version: string;
}
interface JobResult {
  general?: VersionRef;
  pruned?: VersionRef;
  summary?: PruneSummary;
}

/** What a finished job left: the versions it registered, or why it failed or who cancelled it (`-` while it runs). */
export function jobOutcome(job: GrpcJobRecord): string {
  if (job.state === 'failed' || job.state === 'cancelled') return job.error || '-';
  const result = job.state === 'succeeded' ? (parse(job.result_json) as JobResult | null) : null;
  if (!result) return '-';
  return [result.general, result.pruned].filter((ref) => ref !== undefined).map((ref) => `${ref.model}@${ref.version}`).join(', ') || '-';
}

/** `jobs show`: the request, the state (with its progress while running), and the outcome with the ε sweep. */
export function formatJob(job: GrpcJobRecord): string {
  const request = (parse(job.request_json) ?? {}) as JobRequest;
  const progress = parse(job.progress_json) as { phase: string; done: number; total: number; detail?: string } | null;
  const result = parse(job.result_json) as JobResult | null;
  // The task is on the model line.
  const options = Object.entries(request.options ?? {})
    .filter(([key]) => key !== 'task')
    .map(([key, value]) => `${key} ${JSON.stringify(value)}`);
  const lines = [
    `job        ${job.id}`,
    `state      ${job.state}${job.state === 'running' && progress ? `: ${progress.phase} ${progress.done}/${progress.total}${progress.detail ? ` ${progress.detail}` : ''}` : ''}`,
    `model      ${request.name ?? '-'} (label ${request.label ?? '-'}${request.task ? `, ${request.task}` : ''})`,
    `data       ${request.data?.path !== undefined ? `${request.data.path} under the server's data root` : request.data?.csv !== undefined ? `uploaded CSV (${request.data.csv})` : '-'}`,
    ...wrapped('options    ', options.length > 0 ? options : ['defaults']),
    `created    ${job.created_at} by ${job.created_by}${job.node ? ` on ${job.node}` : ''}`,
    `updated    ${job.updated_at}`,
  ];
  if (job.state === 'failed') lines.push(`error      ${job.error}`);
  if (job.state === 'cancelled' && job.error) lines.push(`reason     ${job.error}`);
  if (result?.general && result.pruned) {
    lines.push(`registered ${result.general.model}@${result.general.version} (general) and ${result.pruned.model}@${result.pruned.version} (pruned)`);
  }
  const summary = result?.summary;
  if (summary) {
    const cut = summary.paramCut === null ? '' : ` (−${formatParamCut(summary.paramCut)} params)`;
    lines.push(`pruned     ${summary.originalLayers.join('-')} → ${summary.prunedLayers.join('-')}${cut} at ε ${summary.epsilon ?? '-'}, in ${summary.seconds.toFixed(1)} s (${summary.backend})`);
    // From a server before they were kept: none.
    for (const warning of summary.warnings ?? []) lines.push(`warning    ${warning}`);
  }
  // Escaped to one line each: the name, label, path and error come from the request and its data.
  let text = `${lines.map(printable).join('\n')}\n`;
  if (summary?.sweep && summary.sweep.length > 0) {
    // The chosen ε starred, as prune's own summary marks it.
    const rows = summary.sweep.map((entry) => [
      `${entry.epsilon === summary.epsilon ? '* ' : '  '}${entry.epsilon}`,
      String(entry.params),
      formatParamCut(entry.paramCut),
      // An ε the sweep did not retrain (a smaller model was already within tolerance) has no model to score.
      entry.test ? `${formatScore(entry.test)}${entry.weights === 'transferred' ? ' (transferred weights)' : ''}` : 'not retrained',
    ]);
    text += `\n${formatTable([['  ε', 'PARAMS', 'CUT', 'TEST'], ...rows])}`;
  }
  return text;
}

/** `items` after `head`, comma-separated, as lines of at most 100 columns indented under the first. */
function wrapped(head: string, items: string[]): string[] {
  const lines: string[] = [];
  let line = head;
  items.forEach((item, i) => {
    const text = i < items.length - 1 ? `${item},` : item;
    const empty = line.length === head.length;
    if (!empty && line.length + 1 + text.length > 100) {
      lines.push(line);
      line = `${' '.repeat(head.length)}${text}`;
    } else line += `${empty ? '' : ' '}${text}`;
  });
  return [...lines, line];
}

/** A JSON field of the Job message; null when empty (or, from a newer or older server, not JSON). */
function parse(text: string | undefined): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
