import uPlot from 'uplot';
import { bdiElement, userText } from './bidi.ts';
import { esc, formatScore, table } from './html.ts';

export interface VersionRow {
  model: string;
  version: string;
  /** Registration order (the versions API pages by it). */
  seq: number;
  artifactId: string;
  manifest: { architecture?: { layers?: number[]; params?: number; flopsPerSample?: number }; lineage?: { epsilonMode?: string | null } };
  lineage: { parent?: { model: string; version: string } | null; parentArtifactId?: string | null; epsilon?: number | null; dataFingerprint?: string };
  metrics: { test?: Record<string, number> };
  aliases: string[];
  retired: boolean;
  /** What the rollouts last made of it (null: nothing yet; absent: an older server). */
  status?: { status: string; reason: string; at: string } | null;
}

/** What a rollout made of a version, as a badge whose tooltip says why and when; production shows as its alias. */
function statusBadge(status: VersionRow['status']): string {
  if (!status || status.status === 'production') return '';
  const bad = status.status === 'failed' || status.status === 'rolled-back';
  return `<span class="badge${bad ? ' bad' : ''}" title="${esc(`${status.reason} (${status.at})`)}">${esc(status.status === 'rolled-back' ? 'rolled back' : status.status)}</span>`;
}

export interface SweepPoint {
  epsilon: number;
  params: number;
  paramCut: number;
  test: Record<string, number> | null;
}

/** A job as GET /api/jobs lists it (the fields the sweep chart uses). */
export interface JobRow {
  id: string;
  state: string;
  request?: { name?: string; options?: { epsilonMode?: string } | null } | null;
  result?: { pruned?: { model: string; version: string }; summary?: { epsilon?: number | null; sweep?: SweepPoint[] } } | null;
}

/** A pruning job's ε sweep, and what it is of: the job, its model, the ε it chose and the version that became. */
export interface Sweep {
  jobId: string;
  model: string | undefined;
  chosen: number | null;
  /** ε compared with each unit's variability itself (--epsilon-mode absolute), not relative to its layer's most variable unit. */
  absolute: boolean;
  pruned: { model: string; version: string } | undefined;
  points: readonly SweepPoint[];
}

/** The sweep of the newest finished pruning job among `jobs` (newest first), if any has one. */
export function newestSweep(jobs: readonly JobRow[]): Sweep | null {
  const job = jobs.find((j) => j.state === 'succeeded' && j.result?.summary?.sweep);
  if (!job) return null;
  const { pruned, summary } = job.result!;
  return { jobId: job.id, model: job.request?.name ?? pruned?.model, chosen: summary?.epsilon ?? null, absolute: job.request?.options?.epsilonMode === 'absolute', pruned, points: summary!.sweep! };
}

/**
 * One page of the registry's versions (by model name, then registration order), with a line saying
 * which ones and buttons to the first, previous and next pages (data-page), as the Fleet view
 * pages. `index`: how many pages of `pageSize` come before this one; `more`: whether more follow.
 */
export function renderModels(versions: readonly VersionRow[], index = 0, pageSize = versions.length, more = false): string {
  const rows = versions.map((v) => {
    const arch = v.manifest.architecture ?? {};
    const { parent, parentArtifactId } = v.lineage;
    const self = `${userText(v.model)}@${userText(v.version)}`;
    // The child as model@version whether or not its parent is registered: a bare version says nothing among hundreds of models.
    const lineage = parent
      ? `${userText(parent.model)}@${userText(parent.version)} → ${self}`
      : parentArtifactId
        ? `<span class="muted">${esc(parentArtifactId.slice(0, 12))}… (unregistered)</span> → ${self}`
        : '<span class="muted">general model</span>';
    return `<tr>
      <td class="model-version">${self}</td>
      <td class="model-version">${lineage}</td>
      <td>${dataCell(v.lineage.dataFingerprint)}</td>
      <td>${esc(epsilonText(v))}</td>
      <td>${esc((arch.layers ?? []).join('-'))}</td>
      <td>${esc(arch.params)}</td>
      <td>${esc(arch.flopsPerSample)}</td>
      <td>${esc(formatScore(v.metrics.test))}</td>
      <td>${v.aliases.map((a) => `<span class="badge ${a === 'production' ? 'ok' : ''}">${userText(a)}</span>`).join(' ')}${v.retired ? ' <span class="badge">retired</span>' : ''} ${statusBadge(v.status)}</td>
    </tr>`;
  });
  const paged = more || index > 0;
  const first = index * pageSize + 1;
  const last = first + versions.length - 1;
  const order = 'by model name, oldest first';
  // The API counts nothing: the total is known on the last page only.
  const shown = versions.length === 0 ? '' : paged ? `Versions ${first}–${last} ${more ? `of more than ${last}` : `of ${last}`}, ${order}` : `All ${versions.length} version${versions.length === 1 ? '' : 's'}, ${order}`;
  const pager = paged
    ? `<div class="pager">
        <button type="button" data-page="first" title="The first page of versions" ${index > 0 ? '' : 'disabled'}>‹ First</button>
        <button type="button" data-page="previous" title="The page before this one" ${index > 0 ? '' : 'disabled'}>‹ Previous</button>
        <button type="button" data-page="next" title="The next ${pageSize} versions" ${more ? '' : 'disabled'}>Next ›</button>
      </div>`
    : '';
  return `${shown ? `<p class="muted" id="versions-shown">${esc(shown)}</p>` : ''}${pager}${table(['version', 'lineage', 'data', 'ε', 'layers', 'params', 'FLOPs/sample', 'test', 'aliases and status'], rows, 'No models registered yet.')}`;
}

/**
 * The data a version was trained on, as its fingerprint (the sha256 of the data set): two versions
 * with the same one were trained on the same data. Its first 12 characters, the whole in the tooltip.
 */
function dataCell(fingerprint: string | undefined): string {
  if (!fingerprint) return '';
  const short = [...fingerprint].length > 12 ? `${[...fingerprint].slice(0, 12).join('')}…` : fingerprint;
  return `<span title="${esc(`data fingerprint ${fingerprint}`)}">${userText(short)}</span>`;
}

/** The version's ε as `models show` prints it: an absolute one says so (a relative ε lies in (0, 1), an absolute one anywhere above 0). */
function epsilonText(v: VersionRow): string {
  const { epsilon } = v.lineage;
  if (epsilon === null || epsilon === undefined) return '';
  return v.manifest.lineage?.epsilonMode === 'absolute' ? `${epsilon} (absolute)` : String(epsilon);
}

const ACCURACY_LABEL = 'test accuracy %';

/** What the sweep chart's score axis plots: a classifier's accuracy in percent, a regression model's R² (higher is better on both). */
export function sweepScoreLabel(points: readonly SweepPoint[]): string {
  return points.some((p) => typeof p.test?.accuracy === 'number') ? ACCURACY_LABEL : 'test R²';
}

let sweepPlot: uPlot | undefined;

/** A dashed vertical line at the chosen ε, when it is on the chart's axis. */
function markEpsilon(u: uPlot, epsilon: number): void {
  const x = u.valToPos(epsilon, 'x', true);
  const { left, top, width, height } = u.bbox;
  if (!(x >= left && x <= left + width)) return;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = '#8a5300';
  ctx.lineWidth = Math.max(1, devicePixelRatio);
  ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
  ctx.beginPath();
  ctx.moveTo(x, top);
  ctx.lineTo(x, top + height);
  ctx.stroke();
  ctx.restore();
}

/**
 * The ε sweep of the newest pruning job: parameters kept and test score against ε, titled with the
 * job and its model (among hundreds of models an untitled chart says nothing), the ε the job chose
 * marked by a dashed line and named below. `jobs`: the sweep was looked for in only the `searched`
 * newest of `total` jobs, which the view says when none of them has one.
 */
export function renderSweep(target: HTMLElement, sweep: Sweep | null, jobs?: { searched: number; total: number }): void {
  sweepPlot?.destroy();
  sweepPlot = undefined;
  target.replaceChildren();
  if (!sweep || sweep.points.length === 0) {
    if (jobs !== undefined) {
      const note = document.createElement('p');
      note.className = 'muted';
      note.id = 'sweep-note';
      note.textContent = `No ε sweep chart: none of the newest ${jobs.searched} of ${jobs.total} jobs is a finished pruning job with a sweep, and older jobs are not searched (fleetprune jobs list --limit 1000 lists more).`;
      target.append(note);
    }
    return;
  }
  const points = [...sweep.points].sort((a, b) => a.epsilon - b.epsilon);
  const score = (p: SweepPoint) => (p.test ? (typeof p.test.accuracy === 'number' ? p.test.accuracy * 100 : p.test.r2 ?? null) : null);
  const scoreLabel = sweepScoreLabel(points);
  const title = document.createElement('h3');
  title.append('ε sweep of pruning job ', bdiElement(sweep.jobId), ...(sweep.model === undefined ? [] : [' (model ', bdiElement(sweep.model), ')']));
  target.append(title);
  const { chosen, pruned } = sweep;
  if (chosen !== null) {
    const said = document.createElement('p');
    said.id = 'sweep-chosen';
    said.className = 'muted';
    said.append(`The job chose ε ${chosen}${sweep.absolute ? ' (absolute)' : ''} (the dashed line)`, ...(pruned ? [': ', bdiElement(`${pruned.model}@${pruned.version}`)] : []), '.');
    target.append(said);
  }
  sweepPlot = new uPlot(
    {
      width: Math.min(720, target.clientWidth || 720),
      height: 220,
      // Shares of 0-100 % on a 0-100 axis (a single point near 89 was drawn on one to 150); R² is unbounded below.
      scales: { x: { time: false }, y: { range: [0, 100] }, ...(scoreLabel === ACCURACY_LABEL ? { score: { range: [0, 100] } } : {}) },
      hooks: chosen === null ? {} : { draw: [(u) => markEpsilon(u, chosen)] },
      axes: [{ label: sweep.absolute ? 'ε (absolute)' : 'ε' }, { label: 'params kept %', scale: 'y' }, { label: scoreLabel, side: 1, scale: 'score', grid: { show: false } }],
      series: [
        { label: 'ε' },
        { label: 'params kept %', stroke: '#2457c5', scale: 'y' },
        { label: scoreLabel, stroke: '#1a7f37', scale: 'score' },
      ],
    },
    [points.map((p) => p.epsilon), points.map((p) => (1 - p.paramCut) * 100), points.map(score)] as uPlot.AlignedData,
    target,
  );
}
