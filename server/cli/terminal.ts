/**
 * Whether progress may be drawn on `stream` as bars that move the cursor back over what they drew:
 * a terminal, but not one that says it cannot move the cursor (TERM=dumb: an Emacs shell, some CI
 * runners' terminals), where the control codes would come out as a wall of garbage.
 */
export function drawsBars(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && env.TERM !== 'dumb';
}
