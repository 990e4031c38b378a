/**
 * What a rollout id may be: 1 to 64 letters, digits, - and _ (the server makes them as
 * `ro-` and 12 hex digits). The REST and gRPC APIs refuse any other as malformed (400), and the
 * dashboard checks a linked id against the same rule before it asks for it.
 */
export const ROLLOUT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isRolloutId(id: string): boolean {
  return ROLLOUT_ID_PATTERN.test(id);
}
