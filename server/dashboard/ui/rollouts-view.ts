import uPlot from 'uplot';
import type { RolloutDetail, RolloutSummary } from '../../rollout/rollout-views.ts';
import { userText } from './bidi.ts';
import { ago, esc, table, utc, when } from './html.ts';
import { printable } from '../../../shared/util/printable.ts';

export type { RolloutDetail, RolloutSummary };

interface DecisionView {
  at: number | string;
  kind: string;
  stepIndex: number;
  verdict: string;
  message: string;
  by?: string;
}

/**
 * The list's step column: where a running rollout is, with its step's description; where a
 * finished one ended (a completed one at its last step, one that failed, was aborted or rolled
 * back at the step it stopped at, said so: "pause until resumed" alone read as a live pause).
 */
function stepCell(r: RolloutSummary): string {
  const at = `${esc(Math.min(r.stepIndex + 1, r.stepCount))}/${esc(r.stepCount)}`;
  if (r.phase === 'Completed') return at;
  if (r.terminal) return `${at}${r.currentStep ? ` <span class="muted">stopped at: ${userText(r.currentStep)}</span>` : ''}`;
  return `${at}${r.currentStep ? ` <span class="muted">${userText(r.currentStep)}</span>` : ''}`;
}

export function renderRolloutList(rollouts: readonly RolloutSummary[], selected: string | undefined): string {
  const rows = rollouts.map(
    (r) => `<tr class="clickable${r.id === selected ? ' selected' : ''}" data-rollout="${esc(r.id)}"${r.id === selected ? ' aria-current="true"' : ''}>
      <td><button type="button" class="link" title="Show this rollout">${esc(r.id)}</button></td><td class="model-version">${userText(r.model)}@${userText(r.candidateVersion)}</td>
      <td><span class="badge phase-${esc(r.phase)}">${esc(r.phase)}</span></td>
      <td>${stepCell(r)}</td>
      <td>${esc(deviceProgress(r.devices, r.terminal))}</td>
      <td class="reason">${userText(r.outcome?.reason ?? r.pause?.message ?? '')}</td>
      <td class="muted" title="${esc(utc(r.updatedAt))}">${esc(ago(r.updatedAt))}</td>
    </tr>`,
  );
  return table(['rollout', 'candidate', 'phase', 'step', 'devices delivered', 'reason', 'updated'], rows, 'No rollouts yet.');
}

/**
 * How many of the rollout's devices have what they should run now, and how many it cannot reach,
 * in `rollout status`'s words. Not `candidate`: that counts devices assigned the candidate, even
 * ones it never reached (150/307 for a rollout whose 150 were all unreachable).
 */
function deviceProgress(d: RolloutSummary['devices'], terminal: boolean): string {
  const stuck = [[d.unreachable, 'unreachable'], [d.refused, 'refused'], [d.reassigned, 'reassigned'], [terminal ? untouched(d) : 0, 'untouched']] as const;
  return [`${d.delivered}/${d.total} delivered`, ...stuck.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`)].join(', ');
}

/**
 * Devices no step of the rollout reached (it ended before their step): sent nothing, they run what
 * they ran. Counted for a finished rollout, where "3/60 delivered, 27 unreachable" left the other
 * 30 unaccounted for.
 */
function untouched(d: RolloutSummary['devices']): number {
  return d.total - d.delivered - d.pending - d.retrying - d.unreachable - d.refused - d.reassigned;
}

/** A step's state as the detail says it beside the step (a pending step says nothing). */
const STEP_STATE: Record<string, string> = { done: 'done', current: 'current', stopped: 'stopped here', skipped: 'skipped' };

export function renderRolloutDetail(r: RolloutDetail): string {
  const steps = r.steps
    // A finished rollout that did not complete (failed, aborted, rolled back) marks the step it stopped at.
    // Its state in words too, not in colour alone (nor in a tooltip a keyboard or screen reader never reaches).
    .map((step) => `<span class="step ${step.status === 'pending' ? '' : esc(step.status)}" title="${esc(step.status === 'stopped' ? `${step.kind}: the rollout stopped here` : step.status === 'skipped' ? `${step.kind}: skipped by a promotion` : step.kind)}">${esc(step.index + 1)}. ${userText(step.description)}${STEP_STATE[step.status] ? ` <span class="step-state">(${STEP_STATE[step.status]})</span>` : ''}</span>`)
    .join('');
  const deviceCounts = [...Object.entries(r.devices), ...(r.terminal ? [['untouched', untouched(r.devices)] as const] : [])]
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${esc(k)} ${esc(n)}`)
    .join(', ');
  const decisions = (r.decisions as unknown as DecisionView[]).slice().reverse();
  const decisionRows = decisions.map(
    (d) =>
      `<tr><td class="muted" title="${esc(utc(d.at))}">${esc(when(d.at))}</td><td>${esc(Math.min(d.stepIndex + 1, r.stepCount))}</td><td>${esc(d.kind)}</td><td><span class="badge">${esc(d.verdict)}</span></td><td class="reason">${userText(d.message)}${decisionBy(d) ? ` <span class="muted">by ${userText(d.by!)}</span>` : ''}</td></tr>`,
  );
  // The phase is a polite live region: a change (Paused to Aborted, say) is announced as it is drawn.
  return `<h3 id="rollout-title" tabindex="-1">${esc(r.id)}: ${userText(r.model)}@${userText(r.candidateVersion)} <span class="badge phase-${esc(r.phase)}" id="rollout-phase" role="status">${esc(r.phase)}</span></h3>
    <div class="steps">${steps}</div>
    ${r.pause && r.phase === 'Paused' ? `<p class="muted">Paused (${userText(r.pause.reason)}): ${userText(r.pause.message)}</p>` : ''}
    ${r.outcome ? `<p>Outcome: <strong>${esc(r.outcome.status)}</strong>: ${userText(r.outcome.reason)}</p>` : ''}
    <p class="muted">Devices: ${deviceCounts || 'none'}${r.previousProduction ? ` · previous production ${userText(r.previousProduction)}` : ''}</p>
    ${attentionTable(r)}
    <fieldset class="actions" id="rollout-actions">
      <button data-action="promote-step" title="${esc(nextStepTitle(r))}" ${canPromote(r) ? '' : 'disabled'}>Next step</button>
      <button data-action="promote-full" class="danger" title="${canPromote(r) ? 'Skip every remaining step and analysis (asks first)' : 'Nothing left to promote'}" ${canPromote(r) ? '' : 'disabled'}>Promote to 100%</button>
      <button data-action="${r.phase === 'Paused' ? 'resume' : 'pause'}" ${r.terminal ? 'disabled' : ''}>${r.phase === 'Paused' ? 'Resume' : 'Pause'}</button>
      ${canHold(r) ? `<button data-action="pause" title="Hold the rollout in this timed pause: its timer no longer moves it on; Resume continues the timed pause until it would have ended">Hold</button>` : ''}
      <button data-action="abort" ${r.terminal ? 'disabled' : ''}>Abort</button>
      <button data-action="rollback" class="danger"${r.rollbackRefused ? ` title="${esc(printable(r.rollbackRefused))}"` : ''} ${canRollBack(r) ? '' : 'disabled'}>Roll back</button>
    </fieldset>
    ${r.rollbackRefused && !canRollBack(r) ? `<p class="muted" id="rollback-refused">Roll back is off: ${userText(printable(r.rollbackRefused))}</p>` : ''}
    <div class="charts" id="analysis-charts"></div>
    <h3>Decision log</h3>
    <div id="decision-log">${table(['time', 'step', 'kind', 'verdict', 'reason'], decisionRows, 'No decisions yet.')}</div>`;
}

/** Device states the dashboard asks for (?devices=): the server lists those that need a look first. */
export const ATTENTION_DEVICES = 20;

const NEEDING_A_LOOK = new Set(['pending', 'retrying', 'unreachable', 'refused']);

/** The devices that need a look (refused, unreachable, retrying, pending), by name, with why: the counts alone do not say which. */
function attentionTable(r: RolloutDetail): string {
  // Not `idle`: a device the rollout has not sent anything yet (not in its cohort so far), or one
  // it never needed to (already on its baseline), is where it should be, not "not there yet".
  const states = (r.deviceStates ?? []).filter((device) => NEEDING_A_LOOK.has(device.delivery));
  if (states.length === 0) return '';
  // Reassigned devices are listed too (delivery refused, in the counts apart); an older server counts them as refused.
  const needing = r.devices.pending + r.devices.retrying + r.devices.unreachable + r.devices.refused + (r.devices.reassigned ?? 0);
  const rows = states.map((device) => `<tr><td class="device-id">${userText(device.id)}</td><td><span class="badge${(device.delivery === 'refused' && !device.reassigned) || device.delivery === 'unreachable' ? ' bad' : ''}">${esc(device.delivery === 'refused' && device.reassigned ? 'reassigned' : device.delivery)}</span></td><td>${esc(device.desired)}</td><td class="reason">${device.reason ? userText(device.reason) : ''}</td></tr>`);
  const more = needing > states.length ? `<p class="muted">The first ${states.length} of ${needing}; <code>fleetprune rollout status --json ${esc(r.id)}</code> lists them all (up to 1000 by default; --devices N for more).</p>` : '';
  return `<h3>Devices not there yet</h3><div id="devices-not-there">${table(['device', 'delivery', 'to run', 'why'], rows, '')}</div>${more}`;
}

/**
 * Whether a decision's actor is shown after its message: most messages name who decided already
 * ("resumed by token:ops", "started by token:ops; previous production none"), and a second "by"
 * would repeat it (the CLI's decisionLine applies the same rule).
 */
export const decisionBy = (d: { message: string; by?: string }): boolean => Boolean(d.by) && !d.message.includes(`by ${d.by}`);

/**
 * Rolled back, failed or aborted already, a rollback again only re-sends the baseline to devices
 * not back on it (not those that left the fleet): with none, the server refuses it. It refuses it
 * too once a newer rollout of the model promoted or is under way (`rollbackRefused`, the button's tooltip).
 */
const canRollBack = (r: RolloutDetail) => !r.rollbackRefused && (!['RolledBack', 'Failed', 'Aborted'].includes(r.phase) || r.notBackOnBaseline > 0);

/** In a timed pause step (its timer moves the rollout on), an operator's pause holds it there until resumed. */
const canHold = (r: RolloutDetail) => !r.terminal && r.phase === 'Paused' && r.pause?.reason === 'step' && r.pause.until !== null;

/** The server refuses to promote a finished rollout, and one already activating the candidate everywhere. */
const canPromote = (r: RolloutDetail) => !r.terminal && r.stepStage !== 'activating';

/**
 * A step as a confirm() dialog or a tooltip names it. Plain text, on one line: its description
 * quotes the spec (a selector's values may hold line breaks), which must not add lines of its own
 * to a dialog, nor reorder it with bidi controls.
 */
const stepName = (r: RolloutDetail, index: number) => {
  const step = r.steps[index];
  return step ? `${index + 1}. ${printable(step.description)}` : 'the full activation (100%)';
};

/** A rollout's own text (ids, model names, versions) in a confirm() dialog: one printable line each (see stepName). */
const plain = (text: string | number) => printable(String(text));

function nextStepTitle(r: RolloutDetail): string {
  if (!canPromote(r)) return 'Nothing left to promote';
  return `Skip step ${stepName(r, r.stepIndex)} and go on with ${stepName(r, r.stepIndex + 1)}`;
}

/** What an action button posts (under /api/rollouts/:id/), and the confirmation it asks for first. */
export interface RolloutAction {
  path: string;
  /** The button's action, for a message about it ("Roll back"). */
  name: string;
  /** What the page says while the request is out ("Rolling back"). */
  pending: string;
  confirm?: string;
  /** The step the action was meant for (as shown): the server refuses it (409) once the rollout has moved on. */
  fromStep?: number;
  /** The pause a resume was meant for (its `pause.since`, as shown): the server refuses it (409) once the rollout is no longer in it. */
  pausedSince?: string;
}

/** A message: plain text, and user-provided parts (ids, server messages) to isolate. */
export type MessageParts = readonly (string | { user: string })[];

/**
 * What the page says when an action's request failed. `status`: the server answered and refused
 * it; undefined: no answer came (the network, a server that went away), so it may have been done.
 */
export function actionFailureText(action: RolloutAction, rolloutId: string, failure: { status?: number; message: string }): MessageParts {
  if (failure.status === undefined) {
    return [
      `${action.name} of `, { user: rolloutId }, ': the server did not answer (', { user: failure.message },
      '), so it may or may not have been done. The view shows the rollout as the server has it once a refresh gets through: look at it before you try again.',
    ];
  }
  if (action.fromStep !== undefined && failure.status === 409) {
    return [`Step ${action.fromStep + 1} not skipped: `, { user: failure.message }, '. The rollout changed since it was shown; the view now shows where it is.'];
  }
  if (action.pausedSince !== undefined && failure.status === 409) {
    return ['Not resumed: ', { user: failure.message }, '. The rollout changed since it was shown (resumed by someone else, perhaps); the view now shows where it is.'];
  }
  return [`${action.name} of `, { user: rolloutId }, ' was not done: ', { user: failure.message }];
}

export function rolloutAction(action: string, r: RolloutDetail): RolloutAction | undefined {
  switch (action) {
    case 'promote-step': {
      // Skipping an analysis promotes without its verdict: ask. Skipping a pause is how one resumes it.
      const current = r.steps[r.stepIndex];
      const confirm = current?.kind === 'analysis' ? `Skip step ${stepName(r, r.stepIndex)} of ${plain(r.id)} without waiting for its verdict, and go on with ${stepName(r, r.stepIndex + 1)}?` : undefined;
      // From the step shown: if someone else promoted it meanwhile, the server refuses instead of skipping the next step too.
      return { path: `promote?step=true&fromStepIndex=${r.stepIndex}`, name: `Skipping step ${stepName(r, r.stepIndex)}`, pending: `Skipping step ${stepName(r, r.stepIndex)}`, fromStep: r.stepIndex, ...(confirm ? { confirm } : {}) };
    }
    case 'promote-full': {
      const skipped = r.steps.filter((step) => step.index >= r.stepIndex).map((step) => stepName(r, step.index));
      const analyses = r.steps.filter((step) => step.index >= r.stepIndex && step.kind === 'analysis').length;
      return {
        path: 'promote',
        name: 'Promote to 100%',
        pending: 'Promoting to 100%',
        confirm:
          `Promote ${plain(r.id)} to 100% now: ${plain(r.model)}@${plain(r.candidateVersion)} becomes active on ${r.devices.total === 1 ? 'its one device' : `all ${r.devices.total} of its devices`} at once, ` +
          `skipping ${skipped.length === 1 ? 'the remaining step' : `the ${skipped.length} remaining steps`} (${skipped.join('; ')})` +
          `${analyses > 0 ? `, including ${analyses === 1 ? 'an analysis' : `${analyses} analyses`}` : ''}?`,
      };
    }
    case 'pause':
      return { path: action, name: 'Pause', pending: 'Pausing' };
    case 'resume':
      // The pause shown: if someone else resumed it meanwhile, the server refuses rather than end the pause that resume left.
      return r.pause
        ? { path: `resume?pausedSince=${encodeURIComponent(r.pause.since)}`, name: 'Resume', pending: 'Resuming', pausedSince: r.pause.since }
        : { path: action, name: 'Resume', pending: 'Resuming' };
    case 'abort':
      return { path: action, name: 'Abort', pending: 'Aborting', confirm: `Abort ${plain(r.id)}?` };
    case 'rollback': {
      // Promoted: the rollback also restores the previous production and takes back the devices given the candidate outside the rollout.
      // Finished already (rolled back, failed, aborted): a rollback again only sends the baseline to the devices not back on it.
      const again = ['RolledBack', 'Failed', 'Aborted'].includes(r.phase);
      const question = again
        ? `${plain(r.id)} is ${plain(r.phase)} already. Send the baseline again to the ${r.notBackOnBaseline} device${r.notBackOnBaseline === 1 ? '' : 's'} not back on it yet?`
        : r.phase === 'Completed' && r.previousProduction
          ? `Roll back every device of ${plain(r.id)} to its baseline, make ${plain(r.model)}@${plain(r.previousProduction)} production again, and send it to every other device running ${plain(r.model)}@${plain(r.candidateVersion)}?`
          : `Roll back every device of ${plain(r.id)} to its baseline?`;
      // A version it restores that is retired, or that a rollout failed or rolled back, in the
      // registry as it is now (not as the start's warnings saw it): said before the click, never a refusal.
      // (None from a server of an older version behind the same address, mid-upgrade.)
      const restoring = r.rollbackWarnings ?? [];
      const warning = restoring.length > 0 ? `Warning: ${restoring.map(plain).join('. ')}. ` : '';
      return { path: action, name: 'Roll back', pending: 'Rolling back', confirm: `${warning}${question}` };
    }
    default:
      return undefined;
  }
}

let plots: uPlot[] = [];

export function clearAnalysisCharts(): void {
  for (const plot of plots) plot.destroy();
  plots = [];
}

/**
 * The time axis: ten minutes around a single measurement (a failed pilot often has just one),
 * where uPlot would span a day in milliseconds, which in seconds is years; else what uPlot chose.
 */
export function timeRange(times: ArrayLike<number | null | undefined>, min: number | null, max: number | null): [number | null, number | null] {
  const first = times[0];
  return typeof first === 'number' && first === times[times.length - 1] ? [first - 300, first + 300] : [min, max];
}

/**
 * The per-device values of one measurement as one number: their median (trimmed evidence keeps it:
 * see trimMeasurementEvidence). A single value (a scalar, trimmed evidence) is itself. Of a
 * relative check, the chart shows the candidate median and the bound of the baseline median (its
 * success threshold) as context only: the verdict compares each device's candidate with its own
 * baseline's bound (the median and mean of those margins, in the decision log), so a Successful
 * candidate's median can be below that line and an Inconclusive one's above it.
 */
export function medianOf(values: readonly number[] | null): number | null {
  if (!values || values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** uPlot's time formats in 24-hour time, as the decision log and the stale badge show times (its hour ticks "7pm" as "19:00"). */
const fmtDate24 = (template: string) =>
  uPlot.fmtDate(template.replace(/\{h\}\{aa\}/g, '{HH}:00').replace(/\{h\}/g, '{HH}').replace(/\{aa\}/g, ''));

/** The names of a chart: its title and its four series (candidate, baseline, success and failure threshold). */
export interface ChartLabels {
  readonly title: string;
  readonly candidate: string;
  readonly baseline: string;
  readonly success: string;
  readonly failure: string;
}

/**
 * The chart's names for a metric. A query's (its measurements ran `query`) name its result, not a
 * candidate's. A relative check's (its measurements carry the relative evidence) say that the lines are context: its verdict is on each device against its own bound,
 * not on the candidate median against the bound of the baseline median (see medianOf).
 */
export function chartLabels(metric: string, decisions: RolloutDetail['decisions']): ChartLabels {
  let evidence: { unit?: unknown; comparator?: unknown } | undefined;
  let query = false;
  for (const d of decisions) {
    const m = d.measurement as { metric?: unknown; relative?: unknown; queries?: Record<string, unknown> } | undefined;
    if (m?.metric !== metric) continue;
    if (typeof m.relative === 'object' && m.relative !== null) evidence = m.relative as typeof evidence;
    if (typeof m.queries?.query === 'string') query = true;
  }
  // A query's result is whatever PromQL returned (a fleet-wide figure, a cohort's), no candidate's value.
  if (query && !evidence) return { title: `${metric} (query result)`, candidate: 'result (median of its values)', baseline: 'baseline (median)', success: 'success threshold', failure: 'failure threshold' };
  if (!evidence) return { title: metric, candidate: 'candidate (median)', baseline: 'baseline (median)', success: 'success threshold', failure: 'failure threshold' };
  // Its unit and which way is better, as the measurement gives them (label units², lower is better).
  const unit = typeof evidence.unit === 'string' ? evidence.unit : null;
  const better = evidence.comparator === '<=' ? 'lower is better' : evidence.comparator === '>=' ? 'higher is better' : null;
  const about = [unit, better].filter((part) => part !== null).join(', ');
  return {
    title: `${metric}${about ? ` in ${about}` : ''} (medians; verdict per device: see the decision log)`,
    candidate: 'candidate (median)',
    baseline: 'baseline (median)',
    success: 'bound of the baseline median',
    failure: 'failure threshold',
  };
}

/** The y axis's width for its widest tick label (uPlot's default 50 px cut "10,000" to "0,000"). */
export function axisWidth(values: readonly (string | number)[] | null): number {
  const widest = Math.max(0, ...(values ?? []).map((value) => String(value).length));
  return Math.max(50, 16 + 7 * widest);
}

/** One chart per analysis metric: the measured value (and baseline) against its thresholds over time. */
export function renderAnalysisCharts(target: HTMLElement, r: RolloutDetail): void {
  clearAnalysisCharts();
  for (const [metric, points] of Object.entries(r.analysisSeries)) {
    if (points.length === 0) continue;
    const labels = chartLabels(metric, r.decisions);
    const box = document.createElement('div');
    box.className = 'chart';
    box.dataset.metric = metric;
    target.append(box);
    // The candidate always; the baseline and each threshold only when a measurement has one: a
    // legend naming a line the chart never draws (a relative check has no failure threshold) misleads.
    const lines: [uPlot.Series, (number | null)[]][] = [
      [{ label: labels.candidate, stroke: '#2457c5', points: { show: true } }, points.map((p) => medianOf(p.value))],
      [{ label: labels.baseline, stroke: '#6b7385', points: { show: true } }, points.map((p) => medianOf(p.baseline))],
      // Of a relative check: the bound of the baseline median, context only (see medianOf).
      [{ label: labels.success, stroke: '#1a7f37', dash: [6, 4] }, points.map((p) => p.successThreshold)],
      [{ label: labels.failure, stroke: '#c62828', dash: [6, 4] }, points.map((p) => p.failureThreshold)],
    ];
    const shown = lines.filter(([, values], i) => i === 0 || values.some((value) => value !== null && value !== undefined));
    const data = [points.map((p) => Date.parse(p.at) / 1000), ...shown.map(([, values]) => values)] as uPlot.AlignedData;
    plots.push(
      new uPlot(
        {
          title: labels.title,
          width: 380,
          height: 200,
          fmtDate: fmtDate24,
          scales: { x: { time: true, range: (u, min, max) => timeRange(u.data[0], min, max) } },
          axes: [{}, { size: (_u, values) => axisWidth(values) }],
          series: [{}, ...shown.map(([series]) => series)],
        },
        data,
        box,
      ),
    );
  }
}
