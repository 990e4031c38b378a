/**
 * A supervisor (systemd, a test) may send SIGTERM the moment it reads a command's ready line. This
 * preloaded module (set in NODE_OPTIONS) holds the process for 300 ms right after it writes that
 * line: a command that listens for the signal only after writing it is then ended by the signal's
 * default action instead of stopping cleanly.
 */
const HOLD_AFTER_READY_LINE = `
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  const result = write(chunk, ...rest);
  if (/^(agent ready|listening http=)/m.test(String(chunk))) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  return result;
};`;

/** The environment that preloads the hold. */
export const HOLD_AFTER_READY_LINE_ENV = {
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=data:text/javascript,${encodeURIComponent(HOLD_AFTER_READY_LINE)}`.trim(),
};
