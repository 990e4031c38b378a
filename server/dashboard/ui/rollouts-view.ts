import uPlot from 'uplot';
import type { RolloutDetail, RolloutSummary } from '../../rollout/rollout-views.ts';
import { ago, esc, table } from './html.ts';

export type { RolloutDetail, RolloutSummary };

interface DecisionView {
  at: number | string;
  kind: string;
  stepIndex: number;
  verdict: string;
  message: string;
  by?: string;
}

export function renderRolloutList(rollouts: readonly RolloutSummary[], selected: string | undefined): string {
  const rows = rollouts.map(
    (r) => `<tr class="clickable${r.id === selected ? ' selected' : ''}" data-rollout="${esc(r.id)}">
      <td>${esc(r.id)}</td><td>${esc(r.model)}@${esc(r.candidateVersion)}</td>
      <td><span class="badge phase-${esc(r.phase)}">${esc(r.phase)}</span></td>
      <td>${esc(Math.min(r.stepIndex + 1, r.stepCount))}/${esc(r.stepCount)}${r.currentStep ? ` <span class="muted">${esc(r.currentStep)}</span>` : ''}</td>
      <td>${esc(r.devices.candidate)}/${esc(r.devices.total)}</td>
      <td>${esc(r.outcome?.reason ?? r.pause?.message ?? '')}</td>
      <td class="muted">${esc(ago(r.updatedAt))}</td>
    </tr>`,
  );
  return table(['rollout', 'candidate', 'phase', 'step', 'devices on candidate', 'reason', 'updated'], rows, 'No rollouts yet.');
}

export function renderRolloutDetail(r: RolloutDetail): string {
  const steps = r.steps
    .map((step) => `<span class="step ${step.status === 'done' ? 'done' : step.status === 'current' ? 'current' : ''}" title="${esc(step.kind)}">${esc(step.index + 1)}. ${esc(step.description)}</span>`)
    .join('');
  const deviceCounts = Object.entries(r.devices)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${esc(k)} ${esc(n)}`)
    .join(', ');
  const decisions = (r.decisions as unknown as DecisionView[]).slice().reverse();
  const decisionRows = decisions.map(
    (d) =>
      `<tr><td class="muted">${esc(new Date(d.at).toLocaleTimeString())}</td><td>${esc(d.stepIndex + 1)}</td><td>${esc(d.kind)}</td><td><span class="badge">${esc(d.verdict)}</span></td><td>${esc(d.message)}${d.by ? ` <span class="muted">by ${esc(d.by)}</span>` : ''}</td></tr>`,
  );
  return `<h3>${esc(r.id)}: ${esc(r.model)}@${esc(r.candidateVersion)} <span class="badge phase-${esc(r.phase)}" id="rollout-phase">${esc(r.phase)}</span></h3>
    <div class="steps">${steps}</div>
    ${r.pause && r.phase === 'Paused' ? `<p class="muted">Paused (${esc(r.pause.reason)}): ${esc(r.pause.message)}</p>` : ''}
    ${r.outcome ? `<p>Outcome: <strong>${esc(r.outcome.status)}</strong>: ${esc(r.outcome.reason)}</p>` : ''}
    <p class="muted">Devices: ${deviceCounts || 'none'}${r.previousProduction ? ` · previous production ${esc(r.previousProduction)}` : ''}</p>
    <div class="actions">
      <button data-action="promote" ${r.terminal ? 'disabled' : ''}>Promote</button>
      <button data-action="${r.phase === 'Paused' ? 'resume' : 'pause'}" ${r.terminal ? 'disabled' : ''}>${r.phase === 'Paused' ? 'Resume' : 'Pause'}</button>
      <button data-action="abort" ${r.terminal ? 'disabled' : ''}>Abort</button>
      <button data-action="rollback" class="danger" ${r.phase === 'RolledBack' ? 'disabled' : ''}>Roll back</button>
    </div>
    <div class="charts" id="analysis-charts"></div>
    <h3>Decision log</h3>
    ${table(['time', 'step', 'kind', 'verdict', 'reason'], decisionRows, 'No decisions yet.')}`;
}

let plots: uPlot[] = [];

/** One chart per analysis metric: the measured value (and baseline) against its thresholds over time. */
export function renderAnalysisCharts(target: HTMLElement, r: RolloutDetail): void {
  for (const plot of plots) plot.destroy();
  plots = [];
  const mean = (values: number[] | null) => (values && values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);
  for (const [metric, points] of Object.entries(r.analysisSeries)) {
    if (points.length === 0) continue;
    const box = document.createElement('div');
    box.className = 'chart';
    box.dataset.metric = metric;
    target.append(box);
    const data = [
      points.map((p) => Date.parse(p.at) / 1000),
      points.map((p) => mean(p.value)),
      points.map((p) => mean(p.baseline)),
      points.map((p) => p.successThreshold),
      points.map((p) => p.failureThreshold),
    ] as uPlot.AlignedData;
    plots.push(
      new uPlot(
        {
          title: metric,
          width: 380,
          height: 200,
          series: [
            {},
            { label: 'candidate', stroke: '#2457c5', points: { show: true } },
            { label: 'baseline', stroke: '#6b7385', points: { show: true } },
            { label: 'success threshold', stroke: '#1a7f37', dash: [6, 4] },
            { label: 'failure threshold', stroke: '#c62828', dash: [6, 4] },
          ],
        },
        data,
        box,
      ),
    );
  }
}
