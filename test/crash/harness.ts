/**
 * The parts of the crash suite (test/crash/*.test.ts): one tenant set up for SMTP and signed
 * webhooks with a route to a receiver, the receiver (a real HTTP server that verifies every
 * delivery's signature and counts it per webhook-id), the load process (test/crash/load.ts) and
 * the checks every run ends with, on the server's data dir.
 */
import { Database } from "bun:sqlite";
import { type Subprocess } from "bun";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { apiCaller } from "../helpers/api.ts";
import { runAgentowl, type Running, waitUntil } from "../helpers/process.ts";
import type { LoadConfig } from "./load.ts";

export const TOKEN = "bootstrap-crash-suite-7c3e9a1f5b2d4e6a";
export const TENANT = "crash";
/** What senders sign their webhooks with (the binding's secret). */
export const HOOK_SECRET = `whsec_${Buffer.from("crash-suite-ingress-secret-32byt").toString("base64")}`;
/** What the appliance signs its deliveries with (the endpoint's secret). */
export const DELIVERY_SECRET = `whsec_${Buffer.from("crash-suite-delivery-secret-32by").toString("base64")}`;
export const RCPT = `inbox@${TENANT}.agentowl.lan`;

/** Settings of every server of the suite: no rate limit or backlog refusal gets in the load's way. */
export const SERVE_ENV = {
  AGENTOWL_SMTP_RATE_PER_IP: "10000000",
  AGENTOWL_SMTP_RATE_PER_TENANT: "10000000",
  AGENTOWL_INGRESS_RATE_PER_BINDING: "10000000",
  AGENTOWL_SHUTDOWN_TIMEOUT: "5s",
};

/** A small seeded PRNG (mulberry32): the same seed, the same kills. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The receiver every route delivers to: each delivery's signature verified, counted per webhook-id. */
export class Receiver {
  /** Deliveries per webhook-id (more than one: a duplicate, which at-least-once allows). */
  readonly seen = new Map<string, number>();
  /** The event each webhook-id carried. */
  readonly eventOf = new Map<string, string>();
  bad = 0;
  /** Requests being answered now, and the most at once (an endpoint's max_in_flight, across nodes). */
  inFlight = 0;
  maxInFlight = 0;
  readonly server: ReturnType<typeof Bun.serve>;

  constructor(random: () => number) {
    const signer = new Webhook(DELIVERY_SECRET);
    this.server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (req) => {
        this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
        try {
          return await this.answer(req, signer, random);
        } finally {
          this.inFlight--;
        }
      },
    });
  }

  private async answer(req: Request, signer: Webhook, random: () => number): Promise<Response> {
    const body = await req.text();
    try {
      signer.verify(body, Object.fromEntries(req.headers));
    } catch {
      this.bad++;
      return new Response("bad signature", { status: 400 });
    }
    const id = req.headers.get("webhook-id")!;
    this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
    this.eventOf.set(id, (JSON.parse(body) as { id: string }).id);
    // One delivery in ten is slow, so that some are in flight whenever the server dies.
    if (random() < 0.1) await Bun.sleep(100);
    return new Response("ok");
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.port}/hooks`;
  }

  get deliveries(): number {
    let n = 0;
    for (const c of this.seen.values()) n += c;
    return n;
  }

  duplicates(): [string, number][] {
    return [...this.seen].filter(([, n]) => n > 1);
  }

  stop(): void {
    this.server.stop(true);
  }
}

/** Tenant `crash`: an email binding (inbox@), a Standard Webhooks binding, one route to the receiver. */
export async function configure(
  url: string,
  receiverUrl: string,
  endpoint: Record<string, unknown> = {},
): Promise<void> {
  const call = apiCaller(() => url, TOKEN);
  const ok = async (method: string, path: string, body: unknown) => {
    const r = await call(method, path, { body });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
  };
  await ok("POST", "/v1/tenants", { name: TENANT });
  await ok("PUT", `/v1/tenants/${TENANT}/secrets/hook-in`, { value: HOOK_SECRET });
  await ok("PUT", `/v1/tenants/${TENANT}/secrets/rx-signing`, { value: DELIVERY_SECRET });
  await ok("POST", `/v1/tenants/${TENANT}/endpoints`, {
    name: "rx",
    url: receiverUrl,
    signing_secret: `vault:${TENANT}/rx-signing`,
    ...endpoint,
  });
  await ok("POST", `/v1/tenants/${TENANT}/bindings`, { name: "mail", type: "email", addresses: ["inbox"] });
  await ok("POST", `/v1/tenants/${TENANT}/bindings`, {
    name: "hooks",
    type: "webhook",
    verify: { scheme: "standard-webhooks", secret: `vault:${TENANT}/hook-in` },
    require_json: true,
  });
  await ok("POST", `/v1/tenants/${TENANT}/routes`, { name: "all", to: ["rx"] });
}

export interface Ack {
  k: "smtp1" | "smtpN" | "hook";
  id: string;
  ack?: string;
  code?: number;
  dup?: boolean;
  nack?: number;
  retry_after?: string | null;
  text?: string;
  /** When the test read it (performance.now()). */
  seenAt: number;
}

/** The load process: its record lines as they come, its summary at the end. */
export class Load {
  readonly lines: Ack[] = [];
  summary: Record<string, unknown> | null = null;
  private readonly proc: Subprocess<"ignore", "pipe", "inherit">;
  private readonly pumped: Promise<void>;

  constructor(cfg: Omit<LoadConfig, "hookPath" | "hookSecret" | "rcpt">) {
    const full: LoadConfig = {
      ...cfg,
      hookPath: `/ingress/webhook/${TENANT}/hooks`,
      hookSecret: HOOK_SECRET,
      rcpt: RCPT,
    };
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "load.ts"), JSON.stringify(full)], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
    });
    this.proc = proc;
    this.pumped = (async () => {
      const decoder = new TextDecoder();
      let partial = "";
      for await (const chunk of proc.stdout) {
        const parts = (partial + decoder.decode(chunk, { stream: true })).split("\n");
        partial = parts.pop()!;
        for (const p of parts) {
          if (!p.trim()) continue;
          const line = JSON.parse(p) as Record<string, unknown>;
          if (line.summary) this.summary = line.summary as Record<string, unknown>;
          else this.lines.push({ ...(line as unknown as Ack), seenAt: performance.now() });
        }
      }
    })();
  }

  acks(since = 0): Ack[] {
    return this.lines.filter((l) => l.ack && l.seenAt >= since);
  }

  nacks(since = 0): Ack[] {
    return this.lines.filter((l) => l.nack !== undefined && l.seenAt >= since);
  }

  /** SIGTERM: every worker finishes the item in hand; resolves with the exit code. */
  async stop(timeoutMs = 30_000): Promise<void> {
    this.proc.kill("SIGTERM");
    await waitUntil(
      "the load process to finish",
      () => this.proc.exitCode !== null || this.proc.signalCode !== null,
      timeoutMs,
      50,
    );
    await this.pumped;
    if (this.proc.exitCode !== 0)
      throw new Error(`the load process exited with ${this.proc.exitCode ?? this.proc.signalCode}`);
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

/** Acknowledgements by kind, for the report. */
export function ackCounts(acks: readonly Ack[]): Record<string, number> {
  const out: Record<string, number> = { smtp1: 0, smtpN: 0, hook: 0, hook_dup: 0 };
  for (const a of acks) {
    out[a.k]!++;
    if (a.dup) out.hook_dup!++;
  }
  return out;
}

const readonlyDb = (dataDir: string) => new Database(join(dataDir, "agentowl.db"), { readonly: true });

/** Jobs leased by anyone but `owner` (the live server's `pid:N`): a dead process's leases. */
export function leasedByOthers(
  dataDir: string,
  owner: string,
): { id: number; kind: string; lease_owner: string | null }[] {
  const db = readonlyDb(dataDir);
  try {
    return db
      .query("SELECT id, kind, lease_owner FROM jobs WHERE state = 'leased' AND lease_owner IS NOT ?")
      .all(owner) as { id: number; kind: string; lease_owner: string | null }[];
  } finally {
    db.close();
  }
}

/** Work still to do: mail not processed, jobs waiting or running, deliveries not delivered, events not routed. */
export function backlog(dataDir: string): Record<string, number> {
  const db = readonlyDb(dataDir);
  try {
    const n = (sql: string) => (db.query(sql).get() as { n: number }).n;
    return {
      mail_queued: n("SELECT count(*) AS n FROM mail_messages WHERE state = 'queued'"),
      jobs_open: n("SELECT count(*) AS n FROM jobs WHERE state IN ('available', 'leased')"),
      deliveries_open: n("SELECT count(*) AS n FROM deliveries WHERE state <> 'delivered'"),
      events_unrouted: n("SELECT count(*) AS n FROM events WHERE routing IS NULL"),
    };
  } finally {
    db.close();
  }
}

/** Wait until the server has done everything it was given (read-only looks at its database). */
export async function drained(dataDir: string, timeoutMs = 60_000): Promise<void> {
  let last: Record<string, number> = {};
  try {
    await waitUntil(
      "the server to drain its work",
      () => {
        last = backlog(dataDir);
        return Object.values(last).every((n) => n === 0);
      },
      timeoutMs,
      200,
    );
  } catch (e) {
    // Dead jobs (a mail.process job dead-lettered leaves its message queued) say why.
    const db = readonlyDb(dataDir);
    const dead = db
      .query("SELECT id, kind, attempt, dead_reason, last_error FROM jobs WHERE state = 'dead' LIMIT 10")
      .all();
    db.close();
    throw new Error(`${(e as Error).message}: ${JSON.stringify(last)}; dead jobs ${JSON.stringify(dead)}`);
  }
}

/** `agentowl audit verify --json` against the live server: the public check, whatever it checks. */
export async function auditVerify(
  cwd: string,
  url: string,
): Promise<{ ok: boolean; entries: number } & Record<string, unknown>> {
  const r = await runAgentowl(["audit", "verify", "--json"], {
    cwd,
    env: { AGENTOWL_URL: url, AGENTOWL_TOKEN: TOKEN },
  });
  if (r.code !== 0) throw new Error(`agentowl audit verify exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Every delivery.attempt audit entry, by delivery id (paged through the API). */
export async function attemptAudits(url: string): Promise<Map<string, number>> {
  const call = apiCaller(() => url, TOKEN);
  const out = new Map<string, number>();
  let cursor: string | null = null;
  do {
    const r = await call("GET", `/v1/audit?action=delivery.attempt&limit=500${cursor ? `&cursor=${cursor}` : ""}`);
    if (r.status !== 200) throw new Error(`GET /v1/audit: ${r.status} ${r.text}`);
    for (const e of r.body.items as { target: string | null; details: { delivery?: string } }[]) {
      const id = e.details?.delivery ?? e.target ?? "";
      out.set(id, (out.get(id) ?? 0) + 1);
    }
    cursor = r.body.next_cursor;
  } while (cursor);
  return out;
}

/** Files under `dir`, as paths relative to it (none when it does not exist). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile());
}

export interface Findings {
  events: number;
  deliveries: number;
  /** Broken guarantees, each one line; empty when all hold. */
  problems: string[];
  /**
   * Spool segments no row references (name and size). Known: the spool (src/ingress/smtp/spool.ts) keeps
   * the segment a process was writing when it died, or one a full disk refused, until
   * `spool_retention` purges it; no acknowledged message is in one (its row would reference it).
   */
  unreferencedSegments: string[];
}

/**
 * The checks of every run, on the data dir of a stopped server: each acknowledgement is exactly
 * one event; every event routed to exactly one delivery, delivered and seen by the receiver;
 * every delivery attempt audited; no job left; every spool segment and blob referenced by a row
 * and every referenced one there.
 */
export function checkDataDir(
  dataDir: string,
  acks: readonly Ack[],
  receiver: Receiver,
  audited: Map<string, number> | null,
): Findings {
  const problems: string[] = [];
  const db = readonlyDb(dataDir);
  try {
    const eventsByKey = new Map<string, string[]>();
    // Webhooks by their webhook-id (the idempotency key); mail by its Message-ID (the key is a
    // hash of the message and its envelope, so the Message-ID is read from the envelope).
    const rows = db
      .query(
        "SELECT id, idempotency_key AS key, binding, json_extract(envelope, '$.data.message_id') AS mid FROM events WHERE tenant = ?",
      )
      .all(TENANT) as { id: string; key: string | null; binding: string; mid: string | null }[];
    for (const e of rows) {
      const k = `${e.binding}/${e.binding === "mail" ? e.mid : e.key}`;
      eventsByKey.set(k, [...(eventsByKey.get(k) ?? []), e.id]);
    }
    const eventIds = new Set([...eventsByKey.values()].flat());

    // Each acknowledged item: exactly one event.
    const mailRow = db.query("SELECT state, events, spool_segment FROM mail_messages WHERE id = ?");
    const hookAnswers = new Map<string, Set<string>>();
    for (const a of acks) {
      if (a.k === "hook") {
        hookAnswers.set(a.id, (hookAnswers.get(a.id) ?? new Set()).add(a.ack!));
        continue;
      }
      const row = mailRow.get(a.ack!) as { state: string; events: string | null } | null;
      if (!row) {
        problems.push(`acknowledged message ${a.ack} (${a.id}) has no row`);
        continue;
      }
      const ids = row.events ? (JSON.parse(row.events) as string[]) : [];
      if (row.state !== "processed" || ids.length !== 1 || !eventIds.has(ids[0]!))
        problems.push(`acknowledged message ${a.ack} (${a.id}): state ${row.state}, events ${row.events}`);
      const byKey = eventsByKey.get(`mail/${a.id}`) ?? eventsByKey.get(`mail/${a.id.slice(1, -1)}`) ?? [];
      if (byKey.length !== 1) problems.push(`acknowledged message ${a.ack} (${a.id}) is ${byKey.length} events`);
    }
    for (const [id, answers] of hookAnswers) {
      const byKey = eventsByKey.get(`hooks/${id}`) ?? [];
      if (answers.size !== 1) problems.push(`webhook ${id} was answered with different events: ${[...answers]}`);
      if (byKey.length !== 1 || !answers.has(byKey[0]!))
        problems.push(`acknowledged webhook ${id} (${[...answers]}) is events [${byKey}]`);
    }

    // Every event routed to one delivery to rx, delivered, seen by the receiver, each attempt audited.
    const deliveries = db
      .query("SELECT id, event_id, endpoint, state, attempts FROM deliveries WHERE tenant = ? AND replay_of IS NULL")
      .all(TENANT) as { id: string; event_id: string; endpoint: string; state: string; attempts: number }[];
    const perEvent = new Map<string, number>();
    for (const d of deliveries) {
      perEvent.set(d.event_id, (perEvent.get(d.event_id) ?? 0) + 1);
      if (d.state !== "delivered") problems.push(`delivery ${d.id} of ${d.event_id} is ${d.state}`);
      if (!receiver.seen.has(d.id))
        problems.push(`delivery ${d.id} of ${d.event_id} (${d.state}) never reached the receiver`);
      else if (receiver.eventOf.get(d.id) !== d.event_id)
        problems.push(`delivery ${d.id} carried ${receiver.eventOf.get(d.id)}, not ${d.event_id}`);
      if (audited && (audited.get(d.id) ?? 0) < d.attempts)
        problems.push(`delivery ${d.id}: ${d.attempts} attempts, ${audited.get(d.id) ?? 0} audited`);
    }
    for (const id of eventIds)
      if (perEvent.get(id) !== 1) problems.push(`event ${id} has ${perEvent.get(id) ?? 0} deliveries`);
    const known = new Set(deliveries.map((d) => d.id));
    for (const id of receiver.seen.keys())
      if (!known.has(id)) problems.push(`the receiver got webhook-id ${id}, which is no delivery`);
    if (receiver.bad) problems.push(`${receiver.bad} deliveries with a bad signature`);

    // No job left behind, leased or otherwise.
    for (const j of db
      .query("SELECT id, kind, state, lease_owner, dead_reason, last_error FROM jobs WHERE state <> 'done'")
      .all() as Record<string, unknown>[]) {
      problems.push(
        `job ${j.id} (${j.kind}) is ${j.state}${j.lease_owner ? ` by ${j.lease_owner}` : ""}${j.last_error ? `: ${j.last_error}` : ""}`,
      );
    }

    // The spool: every segment file referenced by a row; every row's bytes there.
    const spoolDir = join(dataDir, "spool");
    const segments = new Set(filesUnder(spoolDir));
    const referenced = new Set<string>();
    for (const r of db
      .query("SELECT id, spool_segment AS seg, spool_offset AS off, spool_length AS len FROM mail_messages")
      .all() as { id: string; seg: string; off: number; len: number }[]) {
      referenced.add(r.seg);
      if (!segments.has(r.seg)) problems.push(`message ${r.id}: spool segment ${r.seg} is missing`);
      else if (statSync(join(spoolDir, r.seg)).size < r.off + r.len)
        problems.push(`message ${r.id}: spool segment ${r.seg} ends before its bytes`);
    }
    const unreferencedSegments: string[] = [];
    for (const s of segments) {
      if (referenced.has(s)) continue;
      if (/^\d{15}-[0-9a-f]{8}\.spool$/.test(s))
        unreferencedSegments.push(`${s} (${statSync(join(spoolDir, s)).size} bytes)`);
      else problems.push(`${s} in the spool is no spool segment`);
    }

    // Blobs: every file an attachment of some event, every attachment's file there.
    const blobDir = join(dataDir, "blobs");
    const blobs = new Set(filesUnder(blobDir));
    const wanted = new Set<string>();
    for (const e of db.query("SELECT envelope FROM events").all() as { envelope: string }[]) {
      for (const at of (JSON.parse(e.envelope) as { data?: { attachments?: { sha256?: string }[] } }).data
        ?.attachments ?? []) {
        if (at.sha256) wanted.add(join("sha256", at.sha256.slice(0, 2), at.sha256));
      }
    }
    for (const w of wanted) if (!blobs.has(w)) problems.push(`blob ${w} is referenced but missing`);
    for (const b of blobs) if (!wanted.has(b)) problems.push(`blob file ${b} is referenced by no event`);

    return { events: eventIds.size, deliveries: deliveries.length, problems, unreferencedSegments };
  } finally {
    db.close();
  }
}

/** Stop a server with SIGTERM and wait for it (a graceful stop: everything committed, the database closed). */
export async function stopGracefully(server: Running): Promise<void> {
  server.proc.kill("SIGTERM");
  await server.exit(20_000);
}

export function readRecord(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
