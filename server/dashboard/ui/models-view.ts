import uPlot from 'uplot';
import { userText } from './bidi.ts';
import { esc, formatScore, table } from './html.ts';

export interface VersionRow {
  model: string;
  version: string;
  /** Registration order (the versions API pages by it). */
  seq: number;
  artifactId: string;
  manifest: { architecture?: { layers?: number[]; params?: number; flopsPerSample?: number }; lineage?: { epsilonMode?: string | null } };
  lineage: { parent?: { model: string; version: string } | null; parentArtifactId?: string | null; epsilon?: number | null };
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

export function renderModels(versions: readonly VersionRow[]): string {
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
      <td>${esc(epsilonText(v))}</td>
      <td>${esc((arch.layers ?? []).join('-'))}</td>
      <td>${esc(arch.params)}</td>
      <td>${esc(arch.flopsPerSample)}</td>
      <td>${esc(formatScore(v.metrics.test))}</td>
      <td>${v.aliases.map((a) => `<span class="badge ${a === 'production' ? 'ok' : ''}">${userText(a)}</span>`).join(' ')}${v.retired ? ' <span class="badge">retired</span>' : ''} ${statusBadge(v.status)}</td>
    </tr>`;
  });
  return table(['version', 'lineage', 'ε', 'layers', 'params', 'FLOPs/sample', 'test', 'aliases and status'], rows, 'No models registered yet.');
}

/** The version's ε as `models show` prints it: an absolute one says so (a relative ε lies in (0, 1), an absolute one anywhere above 0). */
function epsilonText(v: VersionRow): string {
  const { epsilon } = v.lineage;
  if (epsilon === null || epsilon === undefined) return '';
  return v.manifest.lineage?.epsilonMode === 'absolute' ? `${epsilon} (absolute)` : String(epsilon);
}

/** What the sweep chart's score axis plots: a classifier's accuracy in percent, a regression model's R² (higher is better on both). */
export function sweepScoreLabel(points: readonly SweepPoint[]): string {
  return points.some((p) => typeof p.test?.accuracy === 'number') ? 'test accuracy %' : 'test R²';
}

let sweepPlot: uPlot | undefined;

/**
 * The ε sweep of the newest pruning job: parameters kept and test score against ε. `jobs`: the
 * sweep was looked for in only the `searched` newest of `total` jobs, which the view says when
 * none of them has one.
 */
export function renderSweep(target: HTMLElement, sweep: readonly SweepPoint[] | null, jobs?: { searched: number; total: number }): void {
  sweepPlot?.destroy();
  sweepPlot = undefined;
  target.replaceChildren();
  if (!sweep || sweep.length === 0) {
    if (jobs !== undefined) {
      const note = document.createElement('p');
      note.className = 'muted';
      note.id = 'sweep-note';
      note.textContent = `No ε sweep chart: none of the newest ${jobs.searched} of ${jobs.total} jobs is a finished pruning job with a sweep, and older jobs are not searched (fleetprune jobs list --limit 1000 lists more).`;
      target.append(note);
    }
    return;
  }
  const points = [...sweep].sort((a, b) => a.epsilon - b.epsilon);
  const score = (p: SweepPoint) => (p.test ? (typeof p.test.accuracy === 'number' ? p.test.accuracy * 100 : p.test.r2 ?? null) : null);
  const scoreLabel = sweepScoreLabel(points);
  const title = document.createElement('h3');
  title.textContent = 'ε sweep of the newest pruning job';
  target.append(title);
  sweepPlot = new uPlot(
    {
      width: Math.min(720, target.clientWidth || 720),
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: 'ε' }, { label: 'params kept %', scale: 'y' }, { label: scoreLabel, side: 1, scale: 'score', grid: { show: false } }],
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
