import { Elysia } from "elysia";
import { canAccess, type Principal } from "../api/auth.ts";
import type { Logger } from "../core/log.ts";
import type { Storage } from "../store/index.ts";
import type { ConsoleAuth, ConsoleSession } from "./auth.ts";
import type { JSX } from "hono/jsx/jsx-runtime";
import { renderFragment } from "../../web/index.ts";
import { pageResponse, SECURITY_HEADERS } from "./headers.ts";
import type { ConsoleKit, WithServer } from "./kit.ts";

/**
 * The console's live updates (docs/console.md#live-updates): one Server-Sent Events stream per
 * signed-in page, `GET /console/live`. A message says only what changed and in which tenant
 * (`event: events`, `data: {"tenant":"…"}`), never a row: the page's live parts fetch their own
 * URL again, with their filters, so a live list shows exactly what a reload would.
 */

export const LIVE_TOPICS = ["events", "deliveries", "approvals", "dashboard"] as const;
export type LiveTopic = (typeof LIVE_TOPICS)[number];

export interface LiveOptions {
  /** A `: ping` comment this often keeps the stream open through proxies; the session is checked with it. */
  pingMs: number;
  /** Streams one session may hold at once (one per open tab; a browser has ~6 connections per host). */
  perSession: number;
  /** Streams the appliance holds at once. */
  perAppliance: number;
  /** A stream sends at most once per gap: a burst of commits is one message per topic and tenant. */
  gapMs: number;
  /** How long a session check holds before the next message or ping reads the session again. */
  checkMs: number;
}

export const LIVE_DEFAULTS: LiveOptions = {
  pingMs: 15_000,
  perSession: 4,
  perAppliance: 256,
  gapMs: 200,
  checkMs: 1_000,
};

/** The name of the last message of a stream whose session ended; the page closes its stream on it (`sse-close`). */
export const LIVE_ENDED = "ended";

/** How far a stream may fall behind (bytes queued) before it is cut off; the browser reconnects. */
const MAX_BACKLOG = 256 * 1024;

/** An htmx request (a live part fetching itself again): it gets the part alone, not the page. */
export const wantsFragment = (request: Request) => request.headers.get("hx-request") === "true";

/** A live part's answer: the fragment with the page's headers; `Vary` keeps it apart from the page. */
export const fragment = async (part: JSX.Element) =>
  pageResponse(await renderFragment(part), 200, { vary: "HX-Request" });

/** What pages care about in a committed outbox entry's topic. */
export function liveTopicsOf(outboxTopic: string): readonly LiveTopic[] {
  if (outboxTopic === "delivery.awaiting_approval") return ["deliveries", "approvals", "dashboard"];
  if (outboxTopic.startsWith("delivery.")) return ["deliveries", "dashboard"];
  if (outboxTopic.startsWith("approval.")) return ["approvals", "dashboard"];
  return [];
}

const encoder = new TextEncoder();

type Auth = Pick<ConsoleAuth, "sessionUser" | "principalOf">;

class LiveStream {
  private controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  private readonly pending = new Map<string, { topic: LiveTopic; tenant: string }>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private ping: ReturnType<typeof setInterval> | null = null;
  private lastSent = Number.NEGATIVE_INFINITY;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private principal: Principal;
  private closed = false;
  readonly body: ReadableStream<Uint8Array>;

  constructor(
    readonly sessionId: string,
    principal: Principal,
    private readonly hub: LiveHub,
    private readonly auth: Auth,
    private readonly opts: LiveOptions,
  ) {
    this.principal = principal;
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
        // A reconnecting browser waits this long (the SSE default is 3 s); the first bytes open the stream.
        this.write("retry: 5000\n: connected\n\n");
        this.ping = setInterval(() => void this.pingNow(), opts.pingMs);
      },
      cancel: () => this.end(false),
    });
  }

  sees(tenant: string): boolean {
    return canAccess(this.principal, tenant, "read");
  }

  changed(topic: LiveTopic, tenant: string): void {
    if (this.closed || !this.sees(tenant)) return;
    this.pending.set(`${topic}\n${tenant}`, { topic, tenant });
    if (this.timer) return;
    const wait = Math.max(0, this.lastSent + this.opts.gapMs - performance.now());
    this.timer = setTimeout(() => void this.flush(), wait);
  }

  private async flush(): Promise<void> {
    this.timer = null;
    if (!(await this.stillSignedIn())) return;
    this.lastSent = performance.now();
    let text = "";
    for (const { topic, tenant } of this.pending.values())
      if (this.sees(tenant)) text += `event: ${topic}\ndata: ${JSON.stringify({ tenant })}\n\n`;
    this.pending.clear();
    if (text) this.write(text);
  }

  private async pingNow(): Promise<void> {
    if (await this.stillSignedIn()) this.write(": ping\n\n");
  }

  /** The session still live (its user's tenants as they are now), else the stream ends. */
  private async stillSignedIn(): Promise<boolean> {
    if (this.closed) return false;
    const now = performance.now();
    if (now - this.checkedAt < this.opts.checkMs) return true;
    this.checkedAt = now;
    const user = await this.auth.sessionUser(this.sessionId).catch(() => null);
    if (this.closed) return false;
    if (!user) {
      this.end(true);
      return false;
    }
    this.principal = this.auth.principalOf(user);
    return true;
  }

  private write(text: string): void {
    const c = this.controller;
    if (!c || this.closed) return;
    if ((c.desiredSize ?? 0) < -MAX_BACKLOG) {
      this.end(false);
      return;
    }
    try {
      c.enqueue(encoder.encode(text));
    } catch {
      this.end(false);
    }
  }

  /** `told`: the session ended, and the page is told so, so that it does not reconnect. */
  end(told: boolean): void {
    if (this.closed) return;
    if (told) this.write(`event: ${LIVE_ENDED}\ndata: {}\n\n`);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.ping) clearInterval(this.ping);
    this.timer = this.ping = null;
    this.hub.forget(this);
    try {
      this.controller?.close();
    } catch {
      // the client went away first
    }
  }
}

export type LiveOpen =
  | { ok: true; body: ReadableStream<Uint8Array>; end: () => void }
  | { ok: false; reason: "session" | "appliance"; limit: number };

/**
 * Every open live stream of the appliance, fed by the storage's commit hooks: each inserted
 * event, and each committed outbox entry of the dispatcher (`delivery.*`) and of approvals
 * (`approval.*`). A stream hears only about tenants its user may see.
 */
export class LiveHub {
  readonly options: LiveOptions;
  private readonly streams = new Set<LiveStream>();
  private readonly bySession = new Map<string, number>();
  private readonly unsubscribe: (() => void)[];

  constructor(
    storage: Pick<Storage, "events" | "outbox">,
    private readonly auth: Auth,
    options: Partial<LiveOptions> = {},
    private readonly log?: Logger,
  ) {
    this.options = { ...LIVE_DEFAULTS, ...options };
    this.unsubscribe = [
      storage.events.onInserted((tenant) => {
        this.changed("events", tenant);
        this.changed("dashboard", tenant);
      }),
      storage.outbox.onCommitted((topic, tenant) => {
        if (tenant === null) return;
        for (const t of liveTopicsOf(topic)) this.changed(t, tenant);
      }),
    ];
  }

  /** Tell every stream that may see `tenant` that `topic` changed there. */
  changed(topic: LiveTopic, tenant: string): void {
    for (const s of this.streams) s.changed(topic, tenant);
  }

  open(session: ConsoleSession): LiveOpen {
    const { perSession, perAppliance } = this.options;
    if (this.streams.size >= perAppliance) {
      this.log?.warn("console live streams at their limit", { limit: perAppliance });
      return { ok: false, reason: "appliance", limit: perAppliance };
    }
    const mine = this.bySession.get(session.id) ?? 0;
    if (mine >= perSession) return { ok: false, reason: "session", limit: perSession };
    const stream = new LiveStream(session.id, this.auth.principalOf(session.user), this, this.auth, this.options);
    this.streams.add(stream);
    this.bySession.set(session.id, mine + 1);
    return { ok: true, body: stream.body, end: () => stream.end(false) };
  }

  /** A stream that ended gives back its place. */
  forget(stream: LiveStream): void {
    if (!this.streams.delete(stream)) return;
    const n = (this.bySession.get(stream.sessionId) ?? 1) - 1;
    if (n > 0) this.bySession.set(stream.sessionId, n);
    else this.bySession.delete(stream.sessionId);
  }

  /** End the streams of one session at once (its sign-out), telling each page. */
  endSession(sessionId: string): void {
    for (const s of [...this.streams]) if (s.sessionId === sessionId) s.end(true);
  }

  get size(): number {
    return this.streams.size;
  }

  /** End every stream (shutdown: an open stream would hold the listener's drain up) and stop listening. */
  close(): void {
    for (const u of this.unsubscribe) u();
    for (const s of [...this.streams]) s.end(false);
  }
}

/** `GET /console/live`: the page's stream; 401 without a session, 429 beyond the limits. */
export function liveRoutes(kit: ConsoleKit, hub: LiveHub | null) {
  const text = (status: number, body: string, extra: Record<string, string> = {}) =>
    new Response(body, {
      status,
      headers: {
        ...SECURITY_HEADERS,
        "cache-control": "no-store",
        "content-type": "text/plain; charset=utf-8",
        ...extra,
      },
    });
  return new Elysia({ name: "console-live", normalize: false, detail: { hide: true } }).get(
    "/console/live",
    kit.guarded(async ({ request, server }: WithServer) => {
      if (!hub) return kit.notFound(null);
      const v = await kit.visitor(request);
      if (!v) return text(401, "Not signed in.\n");
      const opened = hub.open(v.session);
      if (!opened.ok)
        return text(
          429,
          opened.reason === "session"
            ? `This session has ${opened.limit} live pages open already: close one.\n`
            : "Too many live pages are open on this appliance.\n",
          { "retry-after": "30" },
        );
      request.signal.addEventListener("abort", opened.end);
      // Bun closes a connection idle for 10 s; this one is quiet between messages and pings by design.
      (server as { timeout?(r: Request, seconds: number): void } | null)?.timeout?.(request, 0);
      return new Response(opened.body, {
        headers: {
          ...SECURITY_HEADERS,
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-store",
          "x-accel-buffering": "no",
        },
      });
    }),
  );
}
