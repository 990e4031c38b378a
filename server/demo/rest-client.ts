/** An error answer of the API, with its HTTP status. */
export class RestError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** A small JSON client for the server's REST API, as any operator script would use it. */
export class RestClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /** Every enrolled device, walking GET /api/devices page by page. */
  async allDevices<T = unknown>(): Promise<T[]> {
    const all: T[] = [];
    let after: string | null = null;
    do {
      const page: { devices: T[]; next: string | null } = await this.get(`/devices?limit=5000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      all.push(...page.devices);
      after = page.next;
    } while (after);
    return all;
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const json = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? response.statusText;
      throw new RestError(`${method} /api${path}: ${response.status} ${message}`, response.status);
    }
    return json as T;
  }
}

/** Polls `check` until it returns a value, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
