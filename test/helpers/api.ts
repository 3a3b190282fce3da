/** A small client for the /v1 API in end-to-end tests: JSON in, `{status, headers, body, text}` out. */
export interface CallOptions {
  /** A bearer token; the default one when omitted, none with null. */
  token?: string | null;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as it is (with a JSON content type unless `headers` says otherwise). */
  raw?: string;
  headers?: Record<string, string>;
}

export interface CallResult {
  status: number;
  headers: Headers;
  /** Parsed JSON (or the raw text when it is not JSON); tests read answers of every shape. */
  body: any;
  text: string;
}

export function apiCaller(baseUrl: () => string, defaultToken: string) {
  return async (method: string, path: string, opts: CallOptions = {}): Promise<CallResult> => {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? defaultToken : opts.token;
    if (token) headers.authorization = `Bearer ${token}`;
    const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    if (body !== undefined) headers["content-type"] ??= "application/json";
    const res = await fetch(baseUrl() + path, { method, headers, body });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: res.status, headers: res.headers, body: json, text };
  };
}
