import { InvalidArgumentError } from 'commander';
import { describeIssues } from '../app/describe-issues.ts';
import { LabelSelectorSchema, selectorMatches } from '../rollout/label-selector.ts';
import { UserError } from '../../shared/util/errors.ts';
import { printable } from '../../shared/util/printable.ts';
import type { GrpcDevice } from './json-views.ts';

export type DeviceState = 'online' | 'offline' | 'revoked';
export const DEVICE_STATES: readonly DeviceState[] = ['online', 'offline', 'revoked'];

/** What `devices list` keeps: devices whose labels match every pair, in the state, running the model (or version) as active. */
export interface DeviceFilter {
  selector?: Record<string, string>;
  state?: DeviceState;
  active?: { model: string; version?: string };
}

/** The state `devices list` shows a device in. */
export function deviceState(device: Pick<GrpcDevice, 'revoked_at' | 'online'>): DeviceState {
  return device.revoked_at ? 'revoked' : device.online ? 'online' : 'offline';
}

/** Whether the device passes every part of the filter given: labels as a rollout's matchLabels selects them. */
export function matchesDeviceFilter(device: GrpcDevice, filter: DeviceFilter): boolean {
  if (filter.selector && !selectorMatches({ matchLabels: filter.selector }, device.labels)) return false;
  if (filter.state && deviceState(device) !== filter.state) return false;
  if (filter.active) {
    const active = device.active;
    if (!active || active.model !== filter.active.model) return false;
    if (filter.active.version !== undefined && active.version !== filter.active.version) return false;
  }
  return true;
}

/** `--state`: one of the states the table shows. */
export function parseDeviceState(value: string): DeviceState {
  if (!(DEVICE_STATES as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be ${DEVICE_STATES.join(', ')}, not "${value.slice(0, 40)}"`);
  return value as DeviceState;
}

/** `--active wine` or `--active wine@3`: the model (and version) the device runs as active. */
export function parseActiveModel(value: string): { model: string; version?: string } {
  const at = value.lastIndexOf('@');
  const [model, version] = at < 0 ? [value, undefined] : [value.slice(0, at), value.slice(at + 1)];
  if (model.trim() === '' || (version !== undefined && version.trim() === '')) throw new InvalidArgumentError(`"${value.slice(0, 80)}" is not MODEL or MODEL@VERSION`);
  return version === undefined ? { model } : { model, version };
}

/**
 * `--selector`'s pairs checked as the server checks a rollout's or an assignment's selector (label
 * keys, value lengths), and refused empty as `assign` refuses it: `--selector "$SITE"` with SITE
 * unset listed the whole fleet as the devices asked for, and a key no device can have matched none
 * without a word.
 */
export function checkSelector(pairs: Record<string, string>): Record<string, string> {
  if (Object.keys(pairs).length === 0) throw new UserError('--selector: no key=value pairs given (an empty selector would match every device)');
  const parsed = LabelSelectorSchema.shape.matchLabels.safeParse(pairs);
  // Named by the pair as it was typed (`--selector ключ=x: …`), not by the schema's path.
  if (!parsed.success) {
    const key = parsed.error.issues[0]?.path[0];
    const described = describeIssues(parsed.error, '');
    const prefix = `${String(key)}: `;
    throw new UserError(
      typeof key === 'string' && described.startsWith(prefix) ? printable(`--selector ${key}=${pairs[key] ?? ''}: ${described.slice(prefix.length)}`.slice(0, 400)) : describeIssues(parsed.error, '--selector'),
    );
  }
  return pairs;
}
