import { Api, ApiError } from './api.ts';
import { devicesFrom, renderFleet } from './fleet-view.ts';
import { renderModels, renderSweep, type SweepPoint, type VersionRow } from './models-view.ts';
import { clearAnalysisCharts, renderAnalysisCharts, renderRolloutDetail, renderRolloutList, rolloutAction, type RolloutDetail, type RolloutSummary } from './rollouts-view.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const TOKEN_KEY = 'fleetprune.token';
const api = new Api(new URLSearchParams(location.hash.slice(1)).get('token') ?? localStorage.getItem(TOKEN_KEY) ?? '');
// A token given in the link (#token=…) is taken, then removed from the address bar and the history.
if (new URLSearchParams(location.hash.slice(1)).has('token')) history.replaceState(null, '', location.pathname + location.search);
const FLEET_PAGE = 500;
const REFRESH_MS = 5000;
const MESSAGE_MS = 6000;
let selected: string | undefined;
/** The rollout the detail view shows (its buttons act on it). */
let shown: RolloutDetail | undefined;
let stream: AbortController | undefined;
let following: string | undefined;
/** When the views last matched the server. */
let refreshedAt: Date | undefined;
/** Set while refreshes fail: the views are as of then, and the actions are off. */
let staleSince: Date | undefined;
/** The server refused the token: nothing is shown, followed or polled until another is entered. */
let refused = false;

// One message box with one hide timer. A message about a lasting condition (refreshes failing, the
// token refused) stays until the condition ends; only a failed action's message hides by itself.
let messageTimer: ReturnType<typeof setTimeout> | undefined;
let messageLasts = false;

function showMessage(text: string, lasting: boolean): void {
  const box = $('error');
  clearTimeout(messageTimer);
  box.textContent = text;
  box.hidden = false;
  messageLasts = lasting;
  if (!lasting) messageTimer = setTimeout(() => (box.hidden = true), MESSAGE_MS);
}

function hideLastingMessage(): void {
  if (!messageLasts) return;
  messageLasts = false;
  $('error').hidden = true;
}

const messageOf = (error: unknown) => String((error as Error)?.message ?? error);
const isRefusal = (error: unknown) => error instanceof ApiError && error.status === 401;
const clock = (date: Date) => date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

function setBadge(text: string, kind: 'ok' | 'bad' | ''): void {
  const live = $('live');
  live.textContent = text;
  live.className = `badge ${kind}`.trim();
}

/** The action buttons work only on views that match the server. */
function applyStaleness(): void {
  const actions = document.getElementById('rollout-actions') as HTMLFieldSetElement | null;
  if (actions) actions.disabled = staleSince !== undefined;
  $('views').classList.toggle('stale', staleSince !== undefined);
  const badge = $('stale');
  badge.hidden = staleSince === undefined;
  badge.textContent = staleSince ? `stale since ${clock(staleSince)}` : '';
}

function markStale(error: unknown): void {
  staleSince ??= refreshedAt ?? new Date();
  applyStaleness();
  showMessage(`Cannot refresh: ${messageOf(error)}. The views show the state of ${clock(staleSince)}; actions are off until a refresh succeeds.`, true);
}

function markCurrent(): void {
  refreshedAt = new Date();
  staleSince = undefined;
  applyStaleness();
  hideLastingMessage();
}

/** The token was refused (revoked, or mistyped): show nothing it no longer lets us see, stop following, and ask for another. */
function signOut(): void {
  refused = true;
  stopFollowing();
  selected = undefined;
  shown = undefined;
  refreshedAt = undefined;
  staleSince = undefined;
  clearAnalysisCharts();
  renderSweep($('sweep-chart'), null);
  for (const id of ['rollouts', 'rollout-detail', 'fleet', 'models']) $(id).replaceChildren();
  applyStaleness();
  localStorage.removeItem(TOKEN_KEY);
  setBadge('signed out', 'bad');
  showMessage(api.token ? 'The server refused the token (revoked or mistyped). Enter a valid token to see the fleet.' : 'Enter a token to see the fleet.', true);
  const input = $<HTMLInputElement>('token');
  input.value = '';
  input.focus();
}

async function refreshFleet(): Promise<void> {
  // One page: a fleet of thousands would make every refresh megabytes; the counts cover everyone.
  $('fleet').innerHTML = renderFleet(devicesFrom(await api.get(`/devices?limit=${FLEET_PAGE}`)));
}

async function refreshModels(): Promise<void> {
  const { models } = await api.get<{ models: { name: string }[] }>('/models');
  const versions = (await Promise.all(models.map((m) => api.get<{ versions: VersionRow[] }>(`/models/${encodeURIComponent(m.name)}/versions`)))).flatMap((r) => r.versions);
  $('models').innerHTML = renderModels(versions);
  const { jobs } = await api.get<{ jobs: { state: string; result?: { summary?: { sweep?: SweepPoint[] } } }[] }>('/jobs');
  const newest = jobs.find((job) => job.state === 'succeeded' && job.result?.summary?.sweep);
  renderSweep($('sweep-chart'), newest?.result?.summary?.sweep ?? null);
}

async function refreshRollouts(): Promise<void> {
  const { rollouts } = await api.get<{ rollouts: RolloutSummary[] }>('/rollouts');
  selected ??= rollouts[0]?.id;
  $('rollouts').innerHTML = renderRolloutList(rollouts, selected);
  if (selected) showRollout(await api.get<RolloutDetail>(`/rollouts/${encodeURIComponent(selected)}`));
}

function showRollout(rollout: RolloutDetail): void {
  shown = rollout;
  $('rollout-detail').innerHTML = renderRolloutDetail(rollout);
  applyStaleness();
  renderAnalysisCharts($('analysis-charts'), rollout);
}

function stopFollowing(): void {
  stream?.abort();
  stream = undefined;
  following = undefined;
}

/** Follows the selected rollout's event stream; every event refreshes the views without a reload. */
function follow(id: string): void {
  if (following === id) return;
  stopFollowing();
  following = id;
  const controller = (stream = new AbortController());
  const connect = async () => {
    while (!controller.signal.aborted) {
      try {
        await api.stream(`/rollouts/${encodeURIComponent(id)}/events`, () => void refreshAll(), controller.signal, () => setBadge('live', 'ok'));
      } catch (error) {
        if (controller.signal.aborted) return;
        if (isRefusal(error)) {
          // Not retried: the refresh finds the token refused and asks for another (or, if it is
          // accepted after all, follows again).
          if (stream === controller) stopFollowing();
          void refreshAll();
          return;
        }
        setBadge('reconnecting', 'bad');
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  void connect();
}

let refreshing: Promise<void> | undefined;
let queued: Promise<void> | undefined;
/** Refreshes every view; asked while a refresh runs, runs once more after it (an event or an action may postdate its reads). */
function refreshAll(): Promise<void> {
  if (refreshing) return (queued ??= refreshing.then(() => ((queued = undefined), refreshAll())));
  const token = api.token;
  refreshing = Promise.allSettled([refreshRollouts(), refreshFleet(), refreshModels()])
    .then((results) => {
      if (token !== api.token) return; // another token was entered meanwhile; its refresh is queued
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
      if (failures.some(isRefusal)) return signOut();
      refused = false;
      if (failures.length > 0) return markStale(failures[0]);
      markCurrent();
      if (selected) follow(selected);
    })
    .finally(() => (refreshing = undefined));
  return refreshing;
}

$('rollouts').addEventListener('click', (event) => {
  const row = (event.target as HTMLElement).closest<HTMLElement>('[data-rollout]');
  if (!row) return;
  selected = row.dataset.rollout;
  void refreshAll();
});

$('rollout-detail').addEventListener('click', async (event) => {
  const button = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
  const rollout = shown;
  if (!button || button.disabled || !rollout || staleSince) return;
  const action = rolloutAction(button.dataset.action!, rollout);
  if (!action) return;
  if (action.confirm && !confirm(action.confirm)) return;
  button.disabled = true;
  try {
    await api.post(`/rollouts/${encodeURIComponent(rollout.id)}/${action.path}`, {});
  } catch (error) {
    showMessage(messageOf(error), false);
  } finally {
    await refreshAll();
  }
});

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  api.token = $<HTMLInputElement>('token').value.trim();
  localStorage.setItem(TOKEN_KEY, api.token);
  refused = false;
  stopFollowing(); // the stream reconnects with the new token after the refresh
  void refreshAll();
});

if (api.token) localStorage.setItem(TOKEN_KEY, api.token);
$<HTMLInputElement>('token').value = api.token;
void refreshAll();
// Fleet heartbeats and new jobs arrive outside any rollout's event stream. A refused token is not retried.
setInterval(() => {
  if (!refused) void refreshAll();
}, REFRESH_MS);
