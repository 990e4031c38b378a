import morphdomModule from 'morphdom';
import { Api, ApiError, isSendableToken } from './api.ts';
import { bdiElement } from './bidi.ts';
import { devicesFrom, renderFleet } from './fleet-view.ts';
import { newestSweep, renderModels, renderSweep, type JobRow, type VersionRow } from './models-view.ts';
import { ROLLOUT_PAGE, renderRolloutPager, rolloutPageFrom } from './rollout-pages.ts';
import { ATTENTION_DEVICES, actionFailureText, clearAnalysisCharts, renderAnalysisCharts, renderRolloutDetail, renderRolloutList, rolloutAction, type MessageParts, type RolloutDetail, type RolloutSummary } from './rollouts-view.ts';
import { printable } from '../../../shared/util/printable.ts';
import { isRolloutId } from '../../../shared/util/rollout-id.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const TOKEN_KEY = 'fleetprune.token';
/** The token this browser keeps: the operator's own (entered, or taken from a link once the server accepted it). */
const savedToken = () => localStorage.getItem(TOKEN_KEY) ?? '';
const api = new Api(savedToken());

/**
 * The token a link gives (#token=…), taken out of the address bar and the history at once (a
 * rollout linked beside it, #token=…&rollout=ID, stays); undefined when the address has none.
 */
function takeLinkToken(): string | undefined {
  const linked = new URLSearchParams(location.hash.slice(1));
  const token = linked.get('token');
  if (token === null) return undefined;
  linked.delete('token');
  history.replaceState(null, '', location.pathname + location.search + (linked.toString() ? `#${linked}` : ''));
  return token;
}
/** The rollout the address links to (#rollout=ID), if any: deep links, and back and forward between selections. */
const linkedRollout = () => new URLSearchParams(location.hash.slice(1)).get('rollout') ?? undefined;
const FLEET_PAGE = 500;
/** Versions per page of the Models view: each refresh downloads the page shown (a version's manifest is a few kB). */
const VERSION_PAGE = 50;
/** Jobs the ε sweep chart looks through for the newest finished pruning job (the API's default page); the answer's `total` says how many there are. */
const JOB_PAGE = 100;
const REFRESH_MS = 5000;
const MESSAGE_MS = 6000;
let selected: string | undefined = linkedRollout();
/** How many of the newest rollouts the list skips: 0 on its first page, ROLLOUT_PAGE on the next older one, … */
let rolloutOffset = 0;
/** The list's next refresh opens the page that holds the selected rollout: a link to one (or back and forward to it), which may be an older page's. */
let seekSelected = selected !== undefined;
/** The rollout the detail view shows (its buttons act on it). */
let shown: RolloutDetail | undefined;
/**
 * What the detail view and its charts were last drawn from: a refresh that finds the same leaves
 * them as they are, so a pointer over a chart keeps its read-out and a selection in the decision
 * log stays selected between refreshes.
 */
let shownKey: string | undefined;
let stream: AbortController | undefined;
let following: string | undefined;
/** When the views last matched the server. */
let refreshedAt: Date | undefined;
/** Set while refreshes fail: the views are as of then, and the actions are off. */
let staleSince: Date | undefined;
/** The action whose request is out (actions have no timeout), and on which rollout. */
let actionInFlight: { rolloutId: string; pending: string } | undefined;
/** The server refused the token: nothing is shown, followed or polled until another is entered. */
let refused = false;
/** Sign-outs so far: a refresh that was out across one says nothing more (the sign-out said why). */
let signOuts = 0;

// One message box with one hide timer. A message about a lasting condition (refreshes failing, the
// token refused) stays until the condition ends; only a failed action's message hides by itself.
let messageTimer: ReturnType<typeof setTimeout> | undefined;
let messageLasts = false;
/** Closes the failure shown until dismissed, on Escape (removed when the message goes). */
let dismissOnEscape: ((event: KeyboardEvent) => void) | undefined;
/** The element last focused outside the message box: where a dismissed message sends the focus back. */
let lastFocusOutsideMessage: HTMLElement | undefined;
document.addEventListener('focusin', (event) => {
  if (event.target instanceof HTMLElement && !event.target.closest('#error')) lastFocusOutsideMessage = event.target;
});

/** A message: its text, and user-provided parts (ids, server messages) each isolated in a <bdi>. */
type MessageText = string | MessageParts;

/**
 * `lasting`: about a condition, hidden when it ends (hideLastingMessage); `until-dismissed`: a
 * failed action, shown with a Dismiss button until the operator closes it, another message
 * replaces it or another action succeeds; false: hides itself after MESSAGE_MS.
 */
function showMessage(text: MessageText, lasting: boolean | 'until-dismissed'): void {
  const box = $('error');
  const said = typeof text === 'string' ? text : text.map((part) => (typeof part === 'string' ? part : part.user)).join('');
  // The same lasting message again (every failed refresh of an outage): left as it is, since an
  // alert whose content is replaced is read out again, every 5 s.
  if (lasting === true && messageLasts && !box.hidden && box.dataset.said === said) return;
  clearTimeout(messageTimer);
  if (dismissOnEscape) document.removeEventListener('keydown', dismissOnEscape);
  dismissOnEscape = undefined;
  box.replaceChildren(...(typeof text === 'string' ? [text] : text.map((part) => (typeof part === 'string' ? part : bdiElement(part.user)))));
  box.dataset.said = said;
  box.hidden = false;
  messageLasts = lasting === true;
  if (lasting === 'until-dismissed') {
    // Dismissed (the button, or Escape wherever the focus is), the focus goes back where it was before the message: the
    // control whose action failed, focused again once its request ended.
    const dismiss = document.createElement('button');
    dismiss.type = 'button';
    dismiss.className = 'dismiss';
    dismiss.textContent = 'Dismiss';
    const close = () => {
      box.hidden = true;
      document.removeEventListener('keydown', onKey);
      dismissOnEscape = undefined;
      const from = lastFocusOutsideMessage;
      if (from?.isConnected && !from.matches(':disabled')) from.focus();
      else document.querySelector<HTMLElement>('#rollout-title')?.focus();
    };
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape') close();
    };
    dismiss.addEventListener('click', close);
    document.addEventListener('keydown', onKey);
    dismissOnEscape = onKey;
    box.append(' ', dismiss);
  } else if (!lasting) messageTimer = setTimeout(() => (box.hidden = true), MESSAGE_MS);
}

/** Which failed action's message is shown (`until-dismissed`): `<rollout id> <action>`. */
let shownFailure: string | undefined;

/** Hides the message of the failed action `which` (`<rollout id> <action>`) if it is the one shown; other messages stay. */
function hideActionFailure(which: string): void {
  if (!dismissOnEscape || shownFailure !== which) return;
  document.removeEventListener('keydown', dismissOnEscape);
  dismissOnEscape = undefined;
  $('error').hidden = true;
}

// morphdom's types declare an ES module's default export, which NodeNext reads as a CommonJS
// module's `default`; esbuild bundles its ES module build, whose default import is the function.
const morphdom = ((morphdomModule as unknown as { default?: unknown }).default ?? morphdomModule) as typeof morphdomModule.default;

/**
 * Replaces a view's markup with `html`, changing only what differs (morphdom): every refresh
 * re-renders, and replacing the whole view dropped the keyboard focus to the page and any text
 * the operator had selected (a device id, a version, a reason to copy) every few seconds. What
 * stayed the same keeps its nodes, so a selection in it and the focus stay. A focused element
 * that is gone, or drawn disabled now (Roll back once the rollback is done), hands the focus to
 * the same action or page button as drawn now, else to the rollout's title, not the top of the page.
 */
function render(view: HTMLElement, html: string): void {
  const focused = document.activeElement instanceof HTMLElement && view.contains(document.activeElement) ? document.activeElement : undefined;
  const action = focused?.dataset.action;
  const page = focused?.dataset.page;
  const rollout = focused?.closest<HTMLElement>('[data-rollout]')?.dataset.rollout;
  const next = document.createElement(view.tagName);
  next.innerHTML = html;
  morphdom(view, next, { childrenOnly: true, getNodeKey: nodeKey });
  // Still focused, and still the same rollout's row or the same action (keyed, so a row is not reused for another rollout): it stays.
  const same = focused && document.activeElement === focused && focused.dataset.action === action && focused.dataset.page === page && focused.closest<HTMLElement>('[data-rollout]')?.dataset.rollout === rollout;
  if (!focused || (same && !focused.matches(':disabled'))) return;
  const again = action
    ? view.querySelector<HTMLElement>(`button[data-action="${CSS.escape(action)}"]:enabled`)
    : page
      ? // The other page button once this one is off (the oldest or the newest page reached).
        view.querySelector<HTMLElement>(`button[data-page="${CSS.escape(page)}"]:enabled`) ?? view.querySelector<HTMLElement>('button[data-page]:enabled')
      : rollout !== undefined
        ? view.querySelector<HTMLElement>(`[data-rollout="${CSS.escape(rollout)}"] button:enabled`)
        : null;
  (again ?? view.querySelector<HTMLElement>('#rollout-title'))?.focus();
}

/**
 * What morphdom matches old and new elements by: their id, else what they stand for (a rollout's
 * row, a device's, an action or page button). Matched by position, a row or button was reused for
 * another rollout or action when one was added above it, and the focus went with it (Abort became Hold).
 */
function nodeKey(node: Node): string | undefined {
  if (!(node instanceof HTMLElement)) return undefined;
  if (node.id) return node.id;
  const { rollout, device, action, page } = node.dataset;
  if (rollout !== undefined) return `rollout:${rollout}`;
  if (device !== undefined) return `device:${device}`;
  if (action !== undefined) return `action:${action}`;
  if (page !== undefined) return `page:${page}`;
  return undefined;
}

function hideLastingMessage(): void {
  if (!messageLasts) return;
  messageLasts = false;
  $('error').hidden = true;
}

const messageOf = (error: unknown) => String((error as Error)?.message ?? error);
const isRefusal = (error: unknown) => error instanceof ApiError && error.status === 401;
/**
 * A read the token's role may not make (403: a device's token; the dashboard's reads need viewer
 * or higher). Like a refusal, no retry helps; unlike one, the token is valid: the message says so.
 */
const isTooWeak = (error: unknown) => error instanceof ApiError && error.status === 403;
const tooWeakText = (error: unknown, whose: string): MessageText => [`${whose} may not view the dashboard (`, { user: messageOf(error) }, ')'];
const clock = (date: Date) => date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

function setBadge(text: string, kind: 'ok' | 'bad' | ''): void {
  const live = $('live');
  // A live region: text set again (every refresh) would be read out again.
  if (live.textContent !== text) live.textContent = text;
  live.className = `badge ${kind}`.trim();
}

/** The action buttons work only on views that match the server, and not while an action on the rollout shown is out. */
function applyStaleness(): void {
  const actions = document.getElementById('rollout-actions') as HTMLFieldSetElement | null;
  if (actions) {
    const pending = actionInFlight && actionInFlight.rolloutId === shown?.id ? actionInFlight.pending : undefined;
    // Off while the views are stale, and for a token that may only read (a viewer's): its clicks would all be refused.
    // Off too while an action is out: a refresh that redraws the view meanwhile must not offer a second click.
    actions.disabled = staleSince !== undefined || readOnly() || pending !== undefined;
    actions.title = readOnly() ? `Actions need an operator or admin token; this one is a ${caller!.role}'s` : '';
    let status = document.getElementById('action-pending');
    if (pending === undefined) status?.remove();
    else {
      if (!status) {
        status = document.createElement('p');
        status.id = 'action-pending';
        status.className = 'muted';
        status.setAttribute('role', 'status');
        actions.after(status);
      }
      status.textContent = `${pending}…`;
    }
  }
  $('views').classList.toggle('stale', staleSince !== undefined);
  // Not "live" beside "stale": a hung server can hold the event stream open while it answers nothing.
  $('live').hidden = staleSince !== undefined;
  const badge = $('stale');
  badge.hidden = staleSince === undefined;
  badge.textContent = staleSince ? `stale since ${clock(staleSince)}` : '';
}

function markStale(error: unknown): void {
  staleSince ??= refreshedAt ?? new Date();
  applyStaleness();
  showMessage(['Cannot refresh: ', { user: messageOf(error) }, `. The views show the state of ${clock(staleSince)}; actions are off until a refresh succeeds.`], true);
}

function markCurrent(): void {
  refreshedAt = new Date();
  staleSince = undefined;
  applyStaleness();
  hideLastingMessage();
  // With no rollout to follow (none yet), nothing else clears "signed out" after a valid token.
  if (!following) setBadge('polling', '');
}

/** The calling token (GET /whoami), once a refresh with it has succeeded. */
let caller: { token: string; role: string; label: string } | undefined;
const readOnly = () => caller !== undefined && caller.role !== 'operator' && caller.role !== 'admin';

interface Whoami {
  role: string;
  label: string;
}

function setCaller(token: string, { role, label }: Whoami): void {
  caller = { token, role, label };
  $('whoami').replaceChildren(bdiElement(label), ` (${role}${readOnly() ? ', read-only' : ''})`);
}

/** Who the token is, shown beside the token field; asked once per token. */
async function refreshCaller(): Promise<void> {
  if (caller?.token === api.token) return;
  const token = api.token;
  setCaller(token, await api.get<Whoami>('/whoami'));
  // A link's token that could not be checked when the page opened (the server unreachable), with
  // no saved token it would replace: kept once the server has accepted it.
  if (unsavedLinkToken === token) {
    unsavedLinkToken = undefined;
    if (!savedToken()) localStorage.setItem(TOKEN_KEY, token);
  }
}

/** A link's token in use but not saved yet: see refreshCaller. */
let unsavedLinkToken: string | undefined;

/** Someone's token as a confirm() dialog names it: its label and role, on one printable line. */
const whoLine = (who: Whoami) => `“${printable(who.label)}” (${printable(who.role)})`;

/**
 * A link's token (#token=…) is someone else's until the server says whose it is. It is used, and
 * saved in place of the saved one, only once /whoami accepts it, and, when a different token is
 * saved, only if the operator agrees to replace it. A link token that is refused, cannot be
 * checked or is declined leaves the saved token in use and in place, and the page says so.
 */
async function adoptLinkToken(token: string): Promise<void> {
  const saved = savedToken();
  if (!token || token === api.token) return;
  if (!isSendableToken(token)) {
    // With no token of its own the page says what is wrong with it (refreshAll), and keeps nothing.
    if (!saved) return useToken(token);
    return showMessage("The link's token holds characters no token has (a pasted quote or space?): it was not used; the dashboard goes on with your saved token.", false);
  }
  let who: Whoami;
  try {
    who = await new Api(token).get<Whoami>('/whoami');
  } catch (error) {
    if (isRefusal(error)) {
      if (!saved) return signOut("The server refused the link's token (revoked or mistyped). Enter a valid token to see the fleet.");
      return showMessage("The server refused the link's token (revoked or mistyped): it was not used; the dashboard goes on with your saved token.", false);
    }
    if (isTooWeak(error)) {
      if (!saved) return signOut([...tooWeakText(error, "The link's token"), '. Enter a viewer, operator or admin token to see the fleet.']);
      return showMessage([...tooWeakText(error, "The link's token"), ': it was not used; the dashboard goes on with your saved token.'], false);
    }
    // The server unreachable, say: with no token of its own the page tries it (saved once accepted).
    if (!saved) {
      unsavedLinkToken = token;
      return useToken(token);
    }
    return showMessage(["Cannot check the link's token (", { user: messageOf(error) }, '): it was not used; the dashboard goes on with your saved token. Open the link again to use it.'], false);
  }
  if (saved) {
    const current = await new Api(saved).get<Whoami>('/whoami').catch(() => undefined);
    const question =
      `This link signs you in as ${whoLine(who)}.\n\n` +
      `Replace the token saved in this browser${current ? `, ${whoLine(current)},` : ''} with it? Cancel keeps the saved token.`;
    if (!confirm(question)) return showMessage(["Kept your saved token: the link's token (", { user: who.label }, `, ${who.role}) was not used.`], false);
  }
  localStorage.setItem(TOKEN_KEY, token);
  useToken(token);
  setCaller(token, who);
}

/** Switches to another token: the views and the event stream follow it at the next refresh. */
function useToken(token: string): void {
  api.token = token;
  refused = false;
  stopFollowing(); // the stream reconnects with the new token after the refresh
  $<HTMLInputElement>('token').value = token;
  showSignOut();
}

/** Sign out is offered while a token is in use (even one the server cannot be asked about yet). */
function showSignOut(): void {
  $('sign-out').hidden = api.token === '' || refused;
}

/** Forgets and clears all that a token showed: whose it is, the views, the rollout followed. */
function clearViews(): void {
  caller = undefined;
  $('whoami').textContent = '';
  stopFollowing();
  selected = undefined;
  rolloutOffset = 0;
  shown = undefined;
  shownKey = undefined;
  refreshedAt = undefined;
  staleSince = undefined;
  clearAnalysisCharts();
  renderSweep($('sweep-chart'), null);
  for (const id of ['rollouts', 'rollout-detail', 'fleet', 'models']) $(id).replaceChildren();
  applyStaleness();
}

/** The token was refused (revoked, or mistyped): show nothing it no longer lets us see, stop following, and ask for another. */
function signOut(why?: MessageText): void {
  refused = true;
  signOuts++;
  showSignOut();
  clearViews();
  // Only the token refused is forgotten: a saved token the refusal was not about stays.
  if (api.token && savedToken() === api.token) localStorage.removeItem(TOKEN_KEY);
  setBadge('signed out', 'bad');
  showMessage(why ?? (api.token ? 'The server refused the token (revoked or mistyped). Enter a valid token to see the fleet.' : 'Enter a token to see the fleet.'), true);
  const input = $<HTMLInputElement>('token');
  input.value = '';
  input.focus();
}

/** A page shown by a pager starts at its top: its table scrolls in a box of its own, which the page before left scrolled down. */
function toTop(view: HTMLElement): void {
  view.querySelector('.table-wrap')?.scrollTo({ top: 0 });
}

/**
 * The fleet view's page: the `after` cursor of each page before the one shown (empty: the first
 * page), and the shown page's own `next`.
 */
let fleetCursors: string[] = [];
let fleetNext: string | null = null;

async function refreshFleet(): Promise<void> {
  // One page at a time: a fleet of thousands would make every refresh megabytes; the counts cover everyone.
  const after = fleetCursors.at(-1);
  let page = devicesFrom(await api.get(`/devices?limit=${FLEET_PAGE}${after === undefined ? '' : `&after=${encodeURIComponent(after)}`}`));
  if (page.devices.length === 0 && fleetCursors.length > 0) {
    // Its devices were revoked meanwhile: back to the first page.
    fleetCursors = [];
    page = devicesFrom(await api.get(`/devices?limit=${FLEET_PAGE}`));
  }
  fleetNext = page.next;
  render($('fleet'), renderFleet(page, fleetCursors.length, FLEET_PAGE));
}

$('fleet').addEventListener('click', (event) => {
  const pager = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-page]');
  if (!pager || pager.disabled) return;
  const to = pager.dataset.page;
  if (to === 'next' && fleetNext !== null) fleetCursors = [...fleetCursors, fleetNext];
  else if (to === 'previous') fleetCursors = fleetCursors.slice(0, -1);
  else if (to === 'first') fleetCursors = [];
  else return;
  void refreshFleet()
    .then(() => toTop($('fleet')))
    .catch((error: unknown) => showMessage(['Cannot list the devices: ', { user: messageOf(error) }], false));
});

/**
 * The Models view's page, as the fleet view's: the cursor of each page before the one shown (the
 * last version of the page before it; empty: the first page), and the shown page's own last
 * version when more follow.
 */
type VersionCursor = { model: string; seq: number };
let versionCursors: VersionCursor[] = [];
let versionNext: VersionCursor | null = null;

const versionsAfter = (after: VersionCursor | undefined) =>
  api.get<{ versions: VersionRow[]; more: boolean }>(`/versions?limit=${VERSION_PAGE}${after ? `&afterModel=${encodeURIComponent(after.model)}&afterSeq=${after.seq}` : ''}`);

async function refreshVersions(): Promise<void> {
  // One page at a time: every version of a registry of a thousand, with their manifests, was
  // megabytes every refresh, seconds of the page's time and a table tens of thousands of pixels tall.
  const cursors = versionCursors;
  let page = await versionsAfter(cursors.at(-1));
  // Paged meanwhile: the refresh that click started draws the page asked for, not this one.
  if (cursors !== versionCursors) return;
  if (page.versions.length === 0 && cursors.length > 0) {
    // Its versions went meanwhile: back to the first page.
    const first: VersionCursor[] = (versionCursors = []);
    page = await versionsAfter(undefined);
    if (first !== versionCursors) return;
  }
  const last = page.versions.at(-1);
  versionNext = page.more && last ? { model: last.model, seq: last.seq } : null;
  render($('models'), renderModels(page.versions, versionCursors.length, VERSION_PAGE, page.more));
}

$('models').addEventListener('click', (event) => {
  const pager = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-page]');
  if (!pager || pager.disabled) return;
  const to = pager.dataset.page;
  if (to === 'next' && versionNext !== null) versionCursors = [...versionCursors, versionNext];
  else if (to === 'previous') versionCursors = versionCursors.slice(0, -1);
  else if (to === 'first') versionCursors = [];
  else return;
  void refreshVersions()
    .then(() => toTop($('models')))
    .catch((error: unknown) => showMessage(['Cannot list the versions: ', { user: messageOf(error) }], false));
});

async function refreshModels(): Promise<void> {
  await refreshVersions();
  const { jobs, total = jobs.length } = await api.get<{ jobs: JobRow[]; total?: number }>(`/jobs?limit=${JOB_PAGE}`);
  // Newest first: a sweep found is the newest one; with none in the page, the view says how many older jobs went unsearched.
  renderSweep($('sweep-chart'), newestSweep(jobs), total > jobs.length ? { searched: jobs.length, total } : undefined);
}

/**
 * The rollout, or why there is none: the server has none by that id (a mistyped or outdated
 * link), or the id cannot be one (a link with a character too many, such as the full stop of the
 * sentence it ended). A malformed id is not asked for, and one the server refuses as such (400)
 * is one too: either would otherwise fail every refresh, leaving no list and no actions.
 */
async function rolloutOrNone(id: string): Promise<RolloutDetail | 'unknown' | 'malformed'> {
  if (!isRolloutId(id)) return 'malformed';
  try {
    // A few device states, not up to 1000 (the default): the server lists those that need a look
    // first (refused, unreachable, retrying, pending), which the view names; it refreshes often.
    return await api.get<RolloutDetail>(`/rollouts/${encodeURIComponent(id)}?devices=${ATTENTION_DEVICES}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return 'unknown';
    if (error instanceof ApiError && error.status === 400) return 'malformed';
    throw error;
  }
}

/** At most `max` characters of a user-given id, for a message. */
const clip = (text: string, max = 80) => ([...text].length > max ? `${[...text].slice(0, max).join('')}…` : text);

/** The page of the list that holds rollout `id` (its offset with it); undefined when there is no such rollout (its detail says so). */
async function pageHolding(id: string): Promise<{ offset: number; answer: RolloutPageAnswer } | undefined> {
  if (!isRolloutId(id)) return undefined;
  try {
    const answer = await api.get<RolloutPageAnswer & { offset: number }>(`/rollouts?limit=${ROLLOUT_PAGE}&containing=${encodeURIComponent(id)}`);
    return { offset: answer.offset, answer };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return undefined;
    throw error;
  }
}

type RolloutPageAnswer = { rollouts: RolloutSummary[]; more?: boolean; total?: number };

async function refreshRollouts(): Promise<void> {
  // Only the page shown: older pages are fetched when asked for, not on every refresh.
  let offset = rolloutOffset;
  let answer: RolloutPageAnswer | undefined;
  if (seekSelected) {
    const held = selected ? await pageHolding(selected) : undefined;
    // Sought once (a failed request is sought again): later refreshes keep the page the user is on.
    seekSelected = false;
    // Paged meanwhile: the page asked for wins.
    if (held && offset === rolloutOffset) ({ offset, answer } = held), (rolloutOffset = offset);
  }
  answer ??= await api.get<RolloutPageAnswer>(`/rollouts?limit=${ROLLOUT_PAGE}&offset=${offset}`);
  const { rollouts, more, total } = rolloutPageFrom(answer);
  selected ??= rollouts[0]?.id;
  const found = selected ? await rolloutOrNone(selected) : undefined;
  let detail = typeof found === 'object' ? found : undefined;
  if (selected && !detail && offset > 0) {
    // The newest one replaces it below: list the page that shows it.
    rolloutOffset = 0;
    return refreshRollouts();
  }
  if (selected && !detail) {
    // Not a failed refresh: the views are current, the link is not. Show the newest instead.
    showMessage(
      found === 'malformed'
        ? ['The link is wrong: ', { user: clip(selected) }, ' is not a rollout id (1 to 64 letters, digits, - or _; a character too many at its end?); showing the newest one.']
        : ['There is no rollout ', { user: selected }, '; showing the newest one.'],
      false,
    );
    if (linkedRollout() === selected) history.replaceState(null, '', location.pathname + location.search);
    selected = rollouts[0]?.id;
    const newest = selected ? await rolloutOrNone(selected) : undefined;
    detail = typeof newest === 'object' ? newest : undefined;
  }
  // The user paged while this page was on its way: the refresh that click queued shows the page
  // asked for, and this one must not put the page left behind back on screen meanwhile.
  if (offset !== rolloutOffset) return;
  render($('rollouts'), renderRolloutPager(offset, rollouts.length, more, total) + (offset > 0 && rollouts.length === 0 ? '' : renderRolloutList(rollouts, selected)));
  if (detail) showRollout(detail);
  else {
    shown = undefined;
    shownKey = undefined;
    clearAnalysisCharts();
    $('rollout-detail').replaceChildren();
  }
}

function showRollout(rollout: RolloutDetail): void {
  shown = rollout;
  const html = renderRolloutDetail(rollout);
  const key = `${html}\u0000${JSON.stringify(rollout.analysisSeries)}`;
  if (key !== shownKey || !$('rollout-detail').hasChildNodes()) {
    shownKey = key;
    render($('rollout-detail'), html);
    renderAnalysisCharts($('analysis-charts'), rollout);
  }
  applyStaleness();
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
        if (isRefusal(error) || isTooWeak(error)) {
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
  // Every API call needs a token: without one, ask for it rather than collect (and log) refusals.
  if (!api.token) {
    if (!refused) signOut();
    return Promise.resolve();
  }
  if (!isSendableToken(api.token)) {
    if (!refused) signOut('That token holds characters no token has (a token is letters, digits and ASCII punctuation only; a pasted quote or space, perhaps). Paste it again to see the fleet.');
    return Promise.resolve();
  }
  const token = api.token;
  const signOutsBefore = signOuts;
  refreshing = Promise.allSettled([refreshCaller(), refreshRollouts(), refreshFleet(), refreshModels()])
    .then((results) => {
      if (token !== api.token) return; // another token was entered meanwhile; its refresh is queued
      // Signed out meanwhile (an action refused for this token, say): what this refresh drew since
      // is cleared again, and the sign-out's message stays rather than being replaced by a second one.
      if (signOuts !== signOutsBefore) return clearViews();
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
      // Refused again while signed out for that token (a refresh queued before the sign-out): the
      // sign-out's own message (the action it names, say) stays.
      if (failures.some(isRefusal)) return refused ? undefined : signOut();
      // A token whose role may not read the views (a device's) gets the same from every refresh: no polling.
      const tooWeak = failures.find(isTooWeak);
      if (tooWeak) return refused ? undefined : signOut([...tooWeakText(tooWeak, 'This token'), '. Enter a viewer, operator or admin token to see the fleet.']);
      refused = false;
      if (failures.length > 0) return markStale(failures[0]);
      markCurrent();
      if (selected) follow(selected);
    })
    .finally(() => (refreshing = undefined));
  return refreshing;
}

$('rollouts').addEventListener('click', (event) => {
  const pager = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-page]');
  if (pager) {
    if (pager.disabled) return;
    rolloutOffset = Math.max(0, rolloutOffset + (pager.dataset.page === 'older' ? ROLLOUT_PAGE : -ROLLOUT_PAGE));
    void refreshAll().then(() => toTop($('rollouts')));
    return;
  }
  const row = (event.target as HTMLElement).closest<HTMLElement>('[data-rollout]');
  if (!row) return;
  selected = row.dataset.rollout;
  // Each selection is a history entry and a link: back and forward step through them, and the address can be shared.
  if (selected && linkedRollout() !== selected) history.pushState(null, '', `#${new URLSearchParams({ rollout: selected })}`);
  void refreshAll().then(revealDetail);
});

/**
 * Brings the selected rollout's detail into view when it is off screen: below a page of 100 rows
 * (or a narrow window's tall rows) a click changed nothing the user could see.
 */
function revealDetail(): void {
  const detail = $('rollout-detail');
  const top = detail.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.75) detail.scrollIntoView({ block: 'start' });
}

window.addEventListener('popstate', () => {
  selected = linkedRollout();
  seekSelected = selected !== undefined;
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
  actionInFlight = { rolloutId: rollout.id, pending: action.pending };
  applyStaleness();
  let tokenRefused = false;
  try {
    await api.post(`/rollouts/${encodeURIComponent(rollout.id)}/${action.path}`, {});
    // Done now: the failure of this very action on this rollout, still shown, is no longer true
    // (another action's, or another rollout's, still is).
    hideActionFailure(`${rollout.id} ${button.dataset.action}`);
  } catch (error) {
    // Until dismissed: it says what did not happen, or may not have (no answer), to a fleet.
    const failure = error instanceof ApiError ? { status: error.status, message: messageOf(error) } : { message: messageOf(error) };
    tokenRefused = isRefusal(error);
    if (!tokenRefused) {
      showMessage(actionFailureText(action, rollout.id, failure), 'until-dismissed');
      shownFailure = `${rollout.id} ${button.dataset.action}`;
    }
  } finally {
    actionInFlight = undefined;
  }
  // Refused for its token (revoked meanwhile), not for what it asked: signed out, with the action
  // that was not done named (a refresh's sign-out would replace the action's message with its own).
  if (tokenRefused) {
    return signOut([`${action.name} of `, { user: rollout.id }, ' was not done: the server refused the token (revoked or mistyped). Enter a valid token to see the fleet.']);
  }
  // Drawn again whatever the refresh finds: a refused action leaves the rollout as it was, and
  // a refresh that finds the same would keep this button off (a Roll back that can no longer be retried).
  shownKey = undefined;
  await refreshAll();
  // Disabled while it was focused, the button lost the keyboard focus: back on it (as drawn now), unless the user moved on;
  // else on the button that took its place (Resume became Pause), else on the rollout's title, not the top of the page.
  if (document.activeElement === document.body) {
    const done = button.dataset.action!;
    const replacement = ({ resume: 'pause', pause: 'resume' } as Record<string, string>)[done];
    const next = [done, replacement]
      .filter((name): name is string => name !== undefined)
      .map((name) => document.querySelector<HTMLElement>(`#rollout-detail button[data-action="${CSS.escape(name)}"]:enabled`))
      .find((found) => found !== null);
    (next ?? document.querySelector<HTMLElement>('#rollout-title'))?.focus();
  }
});

// Signing out forgets the saved token (a shared or lent machine): nothing is shown, followed or
// polled until a token is entered again.
$('sign-out').addEventListener('click', () => {
  localStorage.removeItem(TOKEN_KEY);
  unsavedLinkToken = undefined;
  api.token = '';
  signOut('Signed out: this browser keeps no token now. Enter a token to see the fleet.');
});

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void enterToken($<HTMLInputElement>('token').value.trim()).then(() => refreshAll());
});

/**
 * A token typed in by the operator: theirs to keep. While a saved token works, the typed one
 * replaces it only once /whoami accepts it, so that a typo or a revoked token does not cost the
 * working one (refused, a token in use is forgotten). With none working (none saved, or signed
 * out) it is used at once, as before: the refresh says what is wrong with it. An empty field signs out.
 */
async function enterToken(token: string): Promise<void> {
  const saved = savedToken();
  const working = saved !== '' && saved === api.token && !refused;
  if (token === '' || !working) {
    if (token === '') localStorage.removeItem(TOKEN_KEY);
    else localStorage.setItem(TOKEN_KEY, token);
    unsavedLinkToken = undefined;
    return useToken(token);
  }
  if (token === saved) return;
  const keep = (why: MessageText) => {
    $<HTMLInputElement>('token').value = api.token;
    showMessage(why, false);
  };
  if (!isSendableToken(token)) return keep('That token holds characters no token has (a pasted quote or space?): it was not used; the dashboard goes on with your saved token.');
  let who: Whoami;
  try {
    who = await new Api(token).get<Whoami>('/whoami');
  } catch (error) {
    if (isRefusal(error)) return keep('The server refused that token (revoked or mistyped): it was not used; the dashboard goes on with your saved token.');
    if (isTooWeak(error)) return keep([...tooWeakText(error, 'That token'), ': it was not used; the dashboard goes on with your saved token.']);
    return keep(['Cannot check that token (', { user: messageOf(error) }, '): it was not used; the dashboard goes on with your saved token. Enter it again once the server answers.']);
  }
  localStorage.setItem(TOKEN_KEY, token);
  unsavedLinkToken = undefined;
  useToken(token);
  setCaller(token, who);
}

// A link with a token pasted into the address bar of an open dashboard changes only the address's
// fragment: the token is taken as at a page load.
window.addEventListener('hashchange', () => {
  const token = takeLinkToken();
  if (token !== undefined) void adoptLinkToken(token).then(() => refreshAll());
});

async function start(): Promise<void> {
  const token = takeLinkToken();
  if (token !== undefined) await adoptLinkToken(token);
  $<HTMLInputElement>('token').value = api.token;
  showSignOut();
  await refreshAll();
  // Fleet heartbeats and new jobs arrive outside any rollout's event stream. A refused token is not retried.
  setInterval(() => {
    if (!refused) void refreshAll();
  }, REFRESH_MS);
}
void start();
