/** The dashboard's REST client: bearer token on every call, JSON in and out, SSE over fetch. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Whether a token can go in an Authorization header at all: visible ASCII only (what every
 * fleetprune token is). A pasted curly quote or a non-breaking space makes fetch() throw before
 * any request, which would otherwise read as the server being unreachable.
 */
export function isSendableToken(token: string): boolean {
  return /^[\x21-\x7e]+$/.test(token);
}

/**
 * How long a read waits for the server's answer, body included. Not actions (POST): one the
 * server may have carried out is not reported as failed for being slow.
 */
export const GET_TIMEOUT_MS = 15_000;

/**
 * How long an event stream may stay silent before it counts as dead and is opened again. The
 * server writes a comment every 15 s on an idle stream, so three missed in a row: a hung server,
 * or a connection a proxy or NAT dropped without a word, which no error would ever report.
 */
export const STREAM_SILENCE_MS = 45_000;

export class Api {
  /** `base`: the server's origin; the page's own when empty. */
  constructor(
    public token: string,
    private readonly base = '',
  ) {}

  private headers(json = false): HeadersInit {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (json) headers['content-type'] = 'application/json';
    return headers;
  }

  async get<T = unknown>(path: string): Promise<T> {
    // A server that takes a request and never answers (hung, or behind a stalled proxy) would
    // otherwise hold every refresh forever: the views would look current, and the actions stay on.
    try {
      return await this.parse<T>(await fetch(`${this.base}/api${path}`, { headers: this.headers(), signal: AbortSignal.timeout(GET_TIMEOUT_MS) }));
    } catch (error) {
      if ((error as Error)?.name === 'TimeoutError') throw new Error(`the server did not answer in ${GET_TIMEOUT_MS / 1000} s`);
      throw unreachable(error);
    }
  }

  async post<T = unknown>(path: string, body: unknown = {}): Promise<T> {
    return this.parse<T>(await fetch(`${this.base}/api${path}`, { method: 'POST', headers: this.headers(true), body: JSON.stringify(body) }));
  }

  private async parse<T>(response: Response): Promise<T> {
    const text = await response.text();
    const json = text ? safeJson(text) : undefined;
    if (!response.ok) {
      const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return json as T;
  }

  /**
   * Server-sent events read with fetch (EventSource cannot send an Authorization header).
   * Resolves when the stream ends or `signal` aborts; `onOpen` once the server has accepted it.
   * Rejects when nothing, not even the server's keep-alive comment, arrives for `silenceMs`.
   */
  async stream(path: string, onEvent: (type: string, data: unknown) => void, signal: AbortSignal, onOpen?: () => void, silenceMs = STREAM_SILENCE_MS): Promise<void> {
    const silence = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let heard = 0;
    const watch = () => {
      clearTimeout(timer);
      const seen = ++heard;
      // Judged one turn later: after a stall of the page (or the process), the timer runs before
      // the bytes that arrived meanwhile are read, and they must count.
      timer = setTimeout(() => (timer = setTimeout(() => heard === seen && silence.abort(), 0)), silenceMs);
    };
    watch();
    try {
      const response = await fetch(`${this.base}/api${path}`, { headers: { ...this.headers(), accept: 'text/event-stream' }, signal: AbortSignal.any([signal, silence.signal]) });
      if (!response.ok || !response.body) throw new ApiError(response.status, `event stream ${path}: ${response.status}`);
      onOpen?.();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        watch();
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) type = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length > 0) onEvent(type, safeJson(data.join('\n')));
        }
      }
    } catch (error) {
      if (silence.signal.aborted && !signal.aborted) throw new Error(`the event stream was silent for ${silenceMs / 1000} s`);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * fetch's own failure (a TypeError: no connection, or one cut before the answer) in words that say
 * so; the browser's own words ("Failed to fetch", "NetworkError when attempting to fetch
 * resource.", "Load failed") follow in brackets. Anything else as it is.
 */
function unreachable(error: unknown): unknown {
  if (!(error instanceof TypeError)) return error;
  return new Error(`the server cannot be reached: it is down, or the network to it is (${error.message})`, { cause: error });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
