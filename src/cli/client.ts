import { fingerprintOf, isLoopback, parseFingerprint } from "../server/tls.ts";
import { type CommandArgs, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { type LocalAppliance, localAppliance, peerCertificate, type Pin, pinMismatch, pinnedTls } from "./pin.ts";
import { checkProfileName, type Profile, profilePath, type Profiles, readProfiles } from "./profile.ts";

/**
 * The CLI's side of the /v1 API: where to connect, with which token, and what an answer means
 * as an exit code. Every failure becomes one CommandFailure line (plus one line per field of a
 * validation failure); the token is sent as a header and never printed.
 */
export const DEFAULT_URL = "https://127.0.0.1:8080";

export const CONNECTION_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  profile: { type: "string" },
  fingerprint: { type: "string" },
} as const;

export const CONNECTION_HELP = `Connection: --url, --token (visible to other local users in 'ps'; prefer the variable) and
--profile NAME; else AGENTOWL_URL and AGENTOWL_TOKEN; else the default profile saved by
'agentowl login'; else the appliance on this box, as its settings say it listens (${DEFAULT_URL}
by default). An https:// server must present the certificate pinned by 'agentowl login', or
--fingerprint / AGENTOWL_FINGERPRINT (sha256:…), or on loopback the one in this box's data dir.`;

export const API_EXIT_HELP =
  "Exit codes: 0 ok, 1 failed (invalid input: one line per problem), 2 usage, 3 not found,\n" +
  "4 conflict (stale --if-match, in use), 5 not authenticated or not allowed.";

export interface Connection {
  url: string;
  token: string | null;
  /** Why there is no token, when a profile exists but is for another URL. */
  why?: string;
  /** The certificate an https:// server must present; none: the system's CAs decide. */
  pin?: Pin;
  /** Where the URL came from when no one gave it (the local settings, or the default): an unreachable one says how to give it. */
  guessed?: "local settings" | "default";
}

/** --fingerprint, else AGENTOWL_FINGERPRINT. */
function pinOption(values: CommandArgs["values"], env: Record<string, string | undefined>): Pin | null {
  const flag = stringOpt(values, "fingerprint");
  const raw = flag ?? (env.AGENTOWL_FINGERPRINT || undefined);
  if (raw === undefined) return null;
  const fingerprint = parseFingerprint(raw);
  if (!fingerprint)
    throw new UsageError(
      `${flag !== undefined ? "--fingerprint" : "AGENTOWL_FINGERPRINT"} '${raw}' is not a SHA-256 fingerprint (sha256:AB:CD:… , 32 bytes in hex)`,
    );
  return { fingerprint, source: flag !== undefined ? "--fingerprint" : "AGENTOWL_FINGERPRINT" };
}

const profilePin = (p: Profile, name: string): Pin | null =>
  p.fingerprint
    ? {
        fingerprint: p.fingerprint,
        ...(p.certificate ? { certificate: p.certificate } : {}),
        source: `profile ${name}`,
      }
    : null;

/** On loopback, the certificate file of this box's appliance, when this user can read it. */
function localPin(url: string, local: () => LocalAppliance | null): Pin | null {
  const u = new URL(url);
  if (u.protocol !== "https:" || !isLoopback(u.hostname)) return null;
  const cert = local()?.certificate;
  if (!cert) return null;
  try {
    return { fingerprint: fingerprintOf(cert.pem), certificate: cert.pem, source: cert.path };
  } catch {
    return null;
  }
}

/** An http(s) URL without trailing slashes; `from` names where it came from, for the error. */
export function normalizeUrl(raw: string, from: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${from} '${raw}' is not a URL (e.g. ${DEFAULT_URL})`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new UsageError(`${from} '${raw}' must be an http:// or https:// URL`);
  return raw.replace(/\/+$/, "");
}

/**
 * Flags, then AGENTOWL_URL / AGENTOWL_TOKEN, then the profile file. A profile's token is only
 * ever sent to that profile's own URL: pointing --url elsewhere never leaks it.
 */
export function resolveConnection(
  values: CommandArgs["values"],
  env: Record<string, string | undefined>,
  cwd = process.cwd(),
): Connection {
  let profiles: Profiles | null = null;
  const load = () => (profiles ??= readProfiles(profilePath(env)));
  let local: LocalAppliance | null | undefined;
  const here = () => (local === undefined ? (local = localAppliance(env, cwd)) : local);
  const flagUrl = stringOpt(values, "url");
  const flagToken = stringOpt(values, "token");
  const named = stringOpt(values, "profile");
  const flagPin = pinOption(values, env);
  const withPin = (c: Connection, pin: Pin | null): Connection => {
    const p = pin ?? localPin(c.url, here);
    return p ? { ...c, pin: p } : c;
  };

  if (named !== undefined) {
    const p = load().profiles[checkProfileName(named)];
    if (!p)
      throw new UsageError(`no profile '${named}' in ${profilePath(env)} (run 'agentowl login --profile ${named}')`);
    const profileUrl = normalizeUrl(p.url, `profile ${named}: url`);
    const url = flagUrl === undefined ? profileUrl : normalizeUrl(flagUrl, "--url");
    if (url !== profileUrl && flagToken === undefined) {
      throw new UsageError(`--url differs from profile '${named}' (${p.url}); its token is only sent to its own URL`);
    }
    return withPin({ url, token: flagToken ?? p.token }, flagPin ?? (url === profileUrl ? profilePin(p, named) : null));
  }

  let url =
    flagUrl !== undefined
      ? normalizeUrl(flagUrl, "--url")
      : env.AGENTOWL_URL
        ? normalizeUrl(env.AGENTOWL_URL, "AGENTOWL_URL")
        : null;
  let token = flagToken ?? (env.AGENTOWL_TOKEN || null);
  let why: string | undefined;
  let pin = flagPin;
  if (token === null || url === null || pin === null) {
    const file = load();
    const p = file.default ? file.profiles[file.default] : undefined;
    if (p) {
      const profileUrl = normalizeUrl(p.url, `profile ${file.default}: url`);
      url ??= profileUrl;
      if (token === null && url === profileUrl) token = p.token;
      else if (token === null) why = `the default profile '${file.default}' is for ${profileUrl}`;
      if (url === profileUrl) pin ??= profilePin(p, file.default!);
    }
  }
  const guessed = url === null ? (here() ? ("local settings" as const) : ("default" as const)) : undefined;
  return withPin(
    { url: url ?? here()?.url ?? DEFAULT_URL, token, ...(why ? { why } : {}), ...(guessed ? { guessed } : {}) },
    pin,
  );
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** A JSON body. */
  json?: unknown;
  /** A raw body with its content type (e.g. a YAML file). */
  body?: string;
  contentType?: string;
  /** A resource_version: sent as `If-Match: "N"`. */
  ifMatch?: number | string;
  accept?: string;
  headers?: Record<string, string>;
  /** Give up after this long (default 30 s); 0 waits as long as the server streams. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** What to say when the server answers a bare 404 "not found" (e.g. "tenant beta not found"). */
  notFound?: string;
}

export interface ApiAnswer<T> {
  status: number;
  headers: Headers;
  body: T;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** The exit code of an HTTP status (docs/cli.md). */
export function exitCodeOfStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409 || status === 412) return EXIT.conflict;
  return EXIT.failed;
}

export class ApiClient {
  private tls: Promise<ReturnType<typeof pinnedTls> | undefined> | null = null;
  /** The fingerprint a server presented instead of the pinned one. */
  private mismatch: string | null = null;

  constructor(
    readonly conn: Connection,
    /** Where a warning goes (one line; the token is never in it). */
    private readonly warn: (line: string) => void = (line) => process.stderr.write(line),
  ) {}

  /** The TLS options of every request: prepared once, before any token is sent. */
  private tlsOptions(): Promise<ReturnType<typeof pinnedTls> | undefined> {
    return (this.tls ??= this.prepareTls());
  }

  private async prepareTls(): Promise<ReturnType<typeof pinnedTls> | undefined> {
    const u = new URL(this.conn.url);
    if (u.protocol === "http:") {
      if (!isLoopback(u.hostname))
        this.warn(
          `warning: ${this.conn.url} is plain HTTP: the API token travels in clear on the network (use https://)\n`,
        );
      return undefined;
    }
    const pin = this.conn.pin;
    if (!pin) return undefined;
    let certificate = pin.certificate;
    if (!certificate) {
      // Only a fingerprint (--fingerprint): read the certificate once, check it, then pin it.
      let peer;
      try {
        peer = await peerCertificate(this.conn.url);
      } catch (e) {
        throw this.networkFailure(e, DEFAULT_TIMEOUT_MS, undefined);
      }
      if (peer.fingerprint !== pin.fingerprint) throw pinMismatch(this.conn.url, pin, peer.fingerprint);
      certificate = peer.pem;
    }
    return pinnedTls({ ...pin, certificate }, (presented) => (this.mismatch = presented));
  }

  /** Send a request; a non-2xx answer or a network failure is thrown as a CommandFailure. */
  async send(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    if (!this.conn.token) {
      throw new CommandFailure(
        `no API token for ${this.conn.url}${this.conn.why ? ` (${this.conn.why})` : ""}: set AGENTOWL_TOKEN, pass --token, or run 'agentowl login'`,
        EXIT.auth,
      );
    }
    const headers: Record<string, string> = {
      ...opts.headers,
      authorization: `Bearer ${this.conn.token}`,
      accept: opts.accept ?? "application/json",
    };
    let body: string | undefined;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers["content-type"] = "application/json";
    } else if (opts.body !== undefined) {
      body = opts.body;
      headers["content-type"] = opts.contentType ?? "application/octet-stream";
    }
    if (opts.ifMatch !== undefined) headers["if-match"] = `"${opts.ifMatch}"`;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const tls = await this.tlsOptions();
    const signals = [opts.signal, timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    let res: Response;
    try {
      // Never follow a redirect: it would carry the token to wherever it points.
      const signal = signals.length ? AbortSignal.any(signals) : undefined;
      res = await fetch(this.conn.url + path + queryString(opts.query), {
        method,
        headers,
        body,
        signal,
        redirect: "manual",
        ...(tls ? { tls } : {}),
      });
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (this.conn.pin && !this.mismatch && typeof code === "string" && UNTRUSTED.has(code)) {
        // A pinned self-signed certificate is the connection's only CA, so another certificate
        // fails the chain check before the pin's: read the one presented, to name it.
        const presented = await peerCertificate(this.conn.url).then(
          (p) => p.fingerprint,
          () => null,
        );
        if (presented && presented !== this.conn.pin.fingerprint) this.mismatch = presented;
      }
      throw this.networkFailure(e, timeoutMs, opts.signal);
    }
    if (!res.ok) throw await this.failure(res, method, path, opts);
    return res;
  }

  /** Send a request and read its JSON answer. */
  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<ApiAnswer<T>> {
    const res = await this.send(method, path, opts);
    const text = await res.text();
    let body: unknown = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        throw new CommandFailure(
          `${method} ${path}: the server's answer is not JSON (is ${this.conn.url} an agentowl server?)`,
          EXIT.failed,
        );
      }
    }
    return { status: res.status, headers: res.headers, body: body as T };
  }

  get<T = Record<string, unknown>>(path: string, opts: RequestOptions = {}): Promise<ApiAnswer<T>> {
    return this.call<T>("GET", path, opts);
  }

  /** Every item of a list (at most `max`), following next_cursor page by page; `onPage` hears the running count. */
  async listAll<T>(
    path: string,
    opts: RequestOptions & { pageSize?: number; max?: number; onPage?: (count: number, more: boolean) => void } = {},
  ): Promise<T[]> {
    const { pageSize = 100, max = Infinity, onPage, ...request } = opts;
    const items: T[] = [];
    let cursor: string | undefined;
    for (;;) {
      const limit = Math.min(pageSize, max - items.length);
      const { body } = await this.get<Page<T>>(path, { ...request, query: { ...request.query, limit, cursor } });
      items.push(...body.items);
      const more = Boolean(body.next_cursor) && items.length < max;
      onPage?.(items.length, more);
      if (!more) return items;
      cursor = body.next_cursor!;
    }
  }

  private networkFailure(e: unknown, timeoutMs: number, signal: AbortSignal | undefined): unknown {
    const err = e as Error & { code?: unknown };
    if (signal?.aborted) return e; // the caller stopped it (Ctrl-C): theirs to handle
    if (this.mismatch && this.conn.pin) return pinMismatch(this.conn.url, this.conn.pin, this.mismatch);
    if (err.name === "TimeoutError")
      return new CommandFailure(
        `agentowl at ${this.conn.url} did not answer within ${timeoutMs / 1000} s`,
        EXIT.failed,
        [],
        true,
      );
    if (typeof err.code === "string" && UNTRUSTED.has(err.code)) {
      return new CommandFailure(
        `${this.conn.url} presents a certificate this machine does not trust (${err.message}): run ` +
          `'agentowl login --url ${this.conn.url}' to compare its fingerprint and pin it, or pass ` +
          `--fingerprint sha256:…`,
        EXIT.auth,
      );
    }
    let why = typeof err.code === "string" ? (REASONS[err.code] ?? err.code) : err.message;
    if (err.code === "EPROTO") why = "the TLS handshake failed (does it serve plain HTTP? try http://)";
    else if (err.code === "ECONNRESET" && this.conn.url.startsWith("http:"))
      why = "connection reset (does it serve HTTPS? try https://)";
    // A URL nobody gave (this box's settings, or the default) may not be where the appliance is.
    const hint = this.conn.guessed
      ? ` (the URL of this machine's ${this.conn.guessed === "default" ? "default settings" : "settings"}; give the appliance's with AGENTOWL_URL or --url)`
      : "";
    return new CommandFailure(`cannot reach agentowl at ${this.conn.url}: ${why}${hint}`, EXIT.failed, [], true);
  }

  /** An error answer as one line (the problem's detail) plus one line per listed field error. */
  private async failure(res: Response, method: string, path: string, opts: RequestOptions): Promise<CommandFailure> {
    let problem: { detail?: unknown; title?: unknown; errors?: unknown } = {};
    try {
      const parsed: unknown = JSON.parse(await res.text());
      if (parsed && typeof parsed === "object") problem = parsed as typeof problem;
    } catch {
      // not a problem document (a proxy's HTML page, say): the status line says enough
    }
    let detail =
      typeof problem.detail === "string" && problem.detail
        ? problem.detail
        : typeof problem.title === "string"
          ? problem.title
          : `HTTP ${res.status} ${res.statusText}`.trim();
    if (res.status >= 300 && res.status < 400)
      detail = `the server redirects to ${res.headers.get("location") ?? "elsewhere"}; point --url or AGENTOWL_URL there`;
    else if (res.status === 404 && detail === "no such route")
      detail = `${method} ${path.split("?")[0]}: the server has no such route (is it older than this CLI?)`;
    else if (res.status === 404 && detail === "not found" && opts.notFound) detail = opts.notFound;
    const lines = Array.isArray(problem.errors)
      ? problem.errors.map((f: { field?: unknown; message?: unknown; text?: unknown }) =>
          typeof f.text === "string" ? f.text : `${String(f.field ?? "/")}: ${String(f.message ?? "invalid")}`,
        )
      : [];
    return new CommandFailure(detail, exitCodeOfStatus(res.status), lines, res.status >= 500 || res.status === 429);
  }
}

/** Certificate verification failures: without a pin, the system's CAs decide (a self-signed certificate always fails). */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "no such host",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "connection timed out",
};

function queryString(query: RequestOptions["query"]): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== "") params.set(k, String(v));
  const s = params.toString();
  return s ? `?${s}` : "";
}

/** Wait `ms`, or less if `signal` aborts first (for polling loops that stop at Ctrl-C). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(finish, ms);
    function finish(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", finish);
      done();
    }
    signal.addEventListener("abort", finish);
  });
}

/** `/v1/tenants/beta/endpoints/crm` from its parts, each one URL-encoded. */
export const apiPath = (...parts: string[]): string => `/v1/${parts.map(encodeURIComponent).join("/")}`;

/** A client for a command's connection flags and environment. */
export const clientFor = (values: CommandArgs["values"], env: Record<string, string | undefined>): ApiClient =>
  new ApiClient(resolveConnection(values, env));
