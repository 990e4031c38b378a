import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import type { TestContext } from 'node:test';

/**
 * Deterministic interleavings of code that shares files with other code (two servers on one data
 * directory): every call to the node:fs/promises functions below passes through a hook, so a test
 * can run one actor's whole operation just before the k-th filesystem call of another, for every k.
 *
 * The functions are replaced on the builtin module object and synced to its ES module bindings
 * (module.syncBuiltinESMExports), so code that imported them by name sees the hooks too. Restored
 * when the test ends.
 */
const fsp = createRequire(import.meta.url)('node:fs/promises') as Record<string, (...args: unknown[]) => Promise<unknown>>;

const HOOKED = ['stat', 'lstat', 'open', 'readdir', 'rename', 'unlink', 'utimes', 'mkdir', 'rmdir', 'rm', 'link'] as const;

export interface FsCall {
  fn: (typeof HOOKED)[number];
  args: unknown[];
}

interface Actor {
  name: string;
  calls: FsCall[];
  before?: (index: number, call: FsCall) => Promise<void>;
  after?: (index: number, call: FsCall) => Promise<void>;
}

const actors = new AsyncLocalStorage<Actor>();
/** Hooks on calls made outside any actor (an in-process server answering a request). */
let unownedHooks: { before?: (call: FsCall) => Promise<void>; after?: (call: FsCall) => Promise<void> } = {};
let installed = false;

/** Installs the hooks for the rest of the test `t` (once: a second call in the same test does nothing). */
export function hookFs(t: TestContext): void {
  if (!installed) {
    installed = true;
    const originals = Object.fromEntries(HOOKED.map((fn) => [fn, fsp[fn]!]));
    for (const fn of HOOKED) {
      const original = originals[fn]!;
      fsp[fn] = async (...args: unknown[]) => {
        const call: FsCall = { fn, args };
        const actor = actors.getStore();
        const index = actor ? actor.calls.push(call) - 1 : -1;
        // Hooks run outside the actor: what they do is neither counted nor hooked as its calls.
        if (actor) await actors.exit(async () => actor.before?.(index, call));
        else await unownedHooks.before?.(call);
        const result = await original(...args);
        if (actor) await actors.exit(async () => actor.after?.(index, call));
        else await unownedHooks.after?.(call);
        return result;
      };
    }
    syncBuiltinESMExports();
    t.after(() => {
      installed = false;
      for (const fn of HOOKED) fsp[fn] = originals[fn]!;
      unownedHooks = {};
      syncBuiltinESMExports();
    });
  }
}

/**
 * Runs `work` as actor `name`: `before(k, call)` runs (and is awaited) before its k-th filesystem
 * call, `after` once the call succeeded. What the hooks run is outside this actor (its calls are
 * not counted, nor hooked unless it runs as an actor itself). Resolves with `work`'s result and
 * the calls it made.
 */
export async function runAs<T>(
  name: string,
  work: () => Promise<T>,
  hooks: { before?: Actor['before']; after?: Actor['after'] } = {},
): Promise<{ result: T; calls: FsCall[] }> {
  const actor: Actor = { name, calls: [], ...hooks };
  const result = await actors.run(actor, work);
  return { result, calls: actor.calls };
}

/** Hooks on filesystem calls made outside any actor (until the test ends or this is called again). */
export function hookUnownedCalls(hooks: typeof unownedHooks): void {
  unownedHooks = hooks;
}

/** `name(path)` of a call, for messages. */
export function describeCall(call: FsCall): string {
  return `${call.fn}(${call.args.filter((arg) => typeof arg === 'string').join(', ')})`;
}
