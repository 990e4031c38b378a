import { Api, ApiError } from './api.ts';
import { devicesFrom, renderFleet } from './fleet-view.ts';
import { renderModels, renderSweep, type SweepPoint, type VersionRow } from './models-view.ts';
import { renderAnalysisCharts, renderRolloutDetail, renderRolloutList, type RolloutDetail, type RolloutSummary } from './rollouts-view.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const TOKEN_KEY = 'fleetprune.token';
const api = new Api(new URLSearchParams(location.hash.slice(1)).get('token') ?? localStorage.getItem(TOKEN_KEY) ?? '');
// A token given in the link (#token=…) is taken, then removed from the address bar and the history.
if (new URLSearchParams(location.hash.slice(1)).has('token')) history.replaceState(null, '', location.pathname + location.search);
const FLEET_PAGE = 500;
let selected: string | undefined;
let stream: AbortController | undefined;
let following: string | undefined;

function showError(error: unknown): void {
  const box = $('error');
  box.textContent = error instanceof ApiError && error.status === 401 ? 'Enter a valid token to see the fleet.' : String((error as Error)?.message ?? error);
  box.hidden = false;
  setTimeout(() => (box.hidden = true), 6000);
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
  const detail = $('rollout-detail');
  detail.innerHTML = renderRolloutDetail(rollout);
  renderAnalysisCharts($('analysis-charts'), rollout);
}

/** Follows the selected rollout's event stream; every event refreshes the views without a reload. */
function follow(id: string): void {
  if (following === id) return;
  following = id;
  stream?.abort();
  stream = new AbortController();
  const controller = stream;
  const live = $('live');
  const connect = async () => {
    while (!controller.signal.aborted) {
      try {
        live.textContent = 'live';
        live.className = 'badge ok';
        await api.stream(`/rollouts/${encodeURIComponent(id)}/events`, () => void refreshAll(), controller.signal);
      } catch (error) {
        if (controller.signal.aborted) return;
        live.textContent = 'reconnecting';
        live.className = 'badge bad';
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  void connect();
}

let refreshing: Promise<void> | undefined;
function refreshAll(): Promise<void> {
  refreshing ??= Promise.allSettled([refreshRollouts(), refreshFleet(), refreshModels()])
    .then((results) => {
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
      if (failed) showError(failed.reason);
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
  if (!button || !selected) return;
  const action = button.dataset.action!;
  if (action === 'rollback' && !confirm(`Roll back every device of ${selected} to its baseline?`)) return;
  if (action === 'abort' && !confirm(`Abort ${selected}?`)) return;
  button.disabled = true;
  try {
    await api.post(`/rollouts/${encodeURIComponent(selected)}/${action}`, {});
  } catch (error) {
    showError(error);
  } finally {
    await refreshAll();
  }
});

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  api.token = $<HTMLInputElement>('token').value.trim();
  localStorage.setItem(TOKEN_KEY, api.token);
  void refreshAll();
});

if (api.token) localStorage.setItem(TOKEN_KEY, api.token);
$<HTMLInputElement>('token').value = api.token;
void refreshAll();
// Fleet heartbeats and new jobs arrive outside any rollout's event stream.
setInterval(() => void refreshAll(), 5000);
