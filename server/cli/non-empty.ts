import { UserError } from '../../shared/util/errors.ts';

/**
 * Refuses a string option given as empty (`--model ''`, or `--model "$M"` with M unset): over gRPC
 * an empty string is "not given", so it would silently mean what leaving the option out means
 * (every model's rollouts, the default label) where REST refuses it. `means`: what the server
 * would have taken it for.
 */
export function refuseEmpty(value: string | undefined, flag: string, means: string): void {
  if (value === '') throw new UserError(`${flag}: empty; give a value or leave the option out (empty, it would mean ${means})`);
}
