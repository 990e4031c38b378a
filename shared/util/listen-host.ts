import { createServer } from 'node:net';
import { UserError, errorMessage } from './errors.ts';

/**
 * Checks a listen address (`flag`: --host, --http-host) before anything is opened: it must be an
 * address of this machine, or a name resolving to one (binding an ephemeral port on it once proves
 * both). Otherwise the first listener to fail, whichever it is, would be blamed for it, after the
 * rest had started. An empty one is refused: Node reads it as every interface, which nobody wrote.
 */
export async function checkListenHost(host: string, flag: string): Promise<void> {
  if (host.trim() === '') throw new UserError(`${flag}: must not be empty (0.0.0.0 listens on every interface)`);
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(0, host, resolve);
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL'
      ? 'not an IP address or a resolvable host name'
      : code === 'EADDRNOTAVAIL' ? 'not an address of this machine' : errorMessage(error);
    throw new UserError(`${flag}: cannot listen on ${host} (${reason})`, { cause: error });
  } finally {
    if (probe.listening) await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}
