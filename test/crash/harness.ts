/**
 * The parts of the crash suite (test/crash/*.test.ts): one tenant set up for SMTP and signed
 * webhooks with a route to a receiver, the receiver (a real HTTP server that verifies every
 * delivery's signature and counts it per webhook-id), the load process (test/crash/load.ts) and
 * the checks every run ends with, on the server's data dir.
 */
import { Database } from "bun:sqlite";
import { SQL, type Subprocess } from "bun";
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

/** A job and who holds its lease (`pid:N`). */
export interface LeasedJob {
  id: number;
  kind: string;
  lease_owner: string | null;
}

/** The rows the end-of-run checks (`checkRows`) read, whichever database holds them. */
export interface StoredRows {
  /** Events of the suite's tenant, with the Message-ID of mail and each attachment's sha256. */
  events: { id: string; key: string | null; binding: string; mid: string | null; attachments: string[] }[];
  mail: Map<string, { state: string; events: string[] }>;
  deliveries: { id: string; event_id: string; state: string; attempts: number }[];
  /** Jobs not done. */
  jobsLeft: { id: number; kind: string; state: string; lease_owner: string | null; last_error: string | null }[];
  /** The sha256 of every stored blob (a stray file under blobs/: its path). */
  blobs: Set<string>;
  /** Raw mail: broken references to stored bytes, and stored bytes no message refers to. */
  files: { problems: string[]; unreferenced: string[] };
}

/**
 * What the crash suite reads of a server's state, on SQLite (its data dir: the database, the
 * spool and blob files) or on PostgreSQL (the database holds raw mail and blobs there,
 * docs/architecture.md#several-nodes). Reads only: the server may be running.
 */
export interface CrashStore {
  readonly name: "sqlite" | "postgres";
  /** Jobs leased by anyone but `owner` (the live server's `pid:N`): a dead process's leases. */
  leasedByOthers(owner: string): Promise<LeasedJob[]>;
  /** Work still to do: mail not processed, jobs waiting or running, deliveries not delivered, events not routed. */
  backlog(): Promise<Record<string, number>>;
  /** A few dead jobs (a mail.process job dead-lettered leaves its message queued), to say why a drain stalled. */
  deadJobs(): Promise<Record<string, unknown>[]>;
  rows(): Promise<StoredRows>;
  close(): Promise<void>;
}

const readonlyDb = (dataDir: string) => new Database(join(dataDir, "agentowl.db"), { readonly: true });

function withDb<T>(dataDir: string, read: (db: Database) => T): T {
  const db = readonlyDb(dataDir);
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** Files under `dir`, as paths relative to it (none when it does not exist). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile());
}

function sqliteRows(dataDir: string): StoredRows {
  return withDb(dataDir, (db) => {
    const events = (
      db
        .query(
          "SELECT id, idempotency_key AS key, binding, json_extract(envelope, '$.data.message_id') AS mid, " +
            "json_extract(envelope, '$.data.attachments') AS att FROM events WHERE tenant = ?",
        )
        .all(TENANT) as { id: string; key: string | null; binding: string; mid: string | null; att: string | null }[]
    ).map(({ att, ...e }) => ({
      ...e,
      attachments: ((att ? JSON.parse(att) : []) as { sha256?: string }[]).flatMap((a) => (a.sha256 ? [a.sha256] : [])),
    }));
    const mailRows = db
      .query(
        "SELECT id, state, events, spool_segment AS seg, spool_offset AS off, spool_length AS len FROM mail_messages",
      )
      .all() as { id: string; state: string; events: string | null; seg: string; off: number; len: number }[];
    const mail = new Map(
      mailRows.map((m) => [m.id, { state: m.state, events: m.events ? (JSON.parse(m.events) as string[]) : [] }]),
    );
    const deliveries = db
      .query("SELECT id, event_id, state, attempts FROM deliveries WHERE tenant = ? AND replay_of IS NULL")
      .all(TENANT) as StoredRows["deliveries"];
    const jobsLeft = db
      .query("SELECT id, kind, state, lease_owner, last_error FROM jobs WHERE state <> 'done'")
      .all() as StoredRows["jobsLeft"];

    // The spool: every segment file referenced by a row; every row's bytes there.
    const problems: string[] = [];
    const spoolDir = join(dataDir, "spool");
    const segments = new Set(filesUnder(spoolDir));
    const referenced = new Set<string>();
    for (const r of mailRows) {
      referenced.add(r.seg);
      if (!segments.has(r.seg)) problems.push(`message ${r.id}: spool segment ${r.seg} is missing`);
      else if (statSync(join(spoolDir, r.seg)).size < r.off + r.len)
        problems.push(`message ${r.id}: spool segment ${r.seg} ends before its bytes`);
    }
    const unreferenced: string[] = [];
    for (const s of segments) {
      if (referenced.has(s)) continue;
      if (/^\d{15}-[0-9a-f]{8}\.spool$/.test(s)) unreferenced.push(`${s} (${statSync(join(spoolDir, s)).size} bytes)`);
      else problems.push(`${s} in the spool is no spool segment`);
    }
    const blobs = new Set(
      filesUnder(join(dataDir, "blobs")).map((f) => /^sha256\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(f)?.[1] ?? f),
    );
    return { events, mail, deliveries, jobsLeft, blobs, files: { problems, unreferenced } };
  });
}

/** The SQLite driver's state: read-only looks at `<dataDir>/agentowl.db`, the spool and blobs folders. */
export function sqliteStore(dataDir: string): CrashStore {
  return {
    name: "sqlite",
    leasedByOthers: async (owner) =>
      withDb(
        dataDir,
        (db) =>
          db
            .query("SELECT id, kind, lease_owner FROM jobs WHERE state = 'leased' AND lease_owner IS NOT ?")
            .all(owner) as LeasedJob[],
      ),
    backlog: async () =>
      withDb(dataDir, (db) => {
        const n = (sql: string) => (db.query(sql).get() as { n: number }).n;
        return {
          mail_queued: n("SELECT count(*) AS n FROM mail_messages WHERE state = 'queued'"),
          jobs_open: n("SELECT count(*) AS n FROM jobs WHERE state IN ('available', 'leased')"),
          deliveries_open: n("SELECT count(*) AS n FROM deliveries WHERE state <> 'delivered'"),
          events_unrouted: n("SELECT count(*) AS n FROM events WHERE routing IS NULL"),
        };
      }),
    deadJobs: async () =>
      withDb(
        dataDir,
        (db) =>
          db
            .query("SELECT id, kind, attempt, dead_reason, last_error FROM jobs WHERE state = 'dead' LIMIT 10")
            .all() as Record<string, unknown>[],
      ),
    rows: async () => sqliteRows(dataDir),
    close: async () => {},
  };
}

/** The PostgreSQL driver's state: the database at `url` (raw mail in spool_chunks, blobs in blob_chunks). */
export function postgresStore(url: string): CrashStore {
  const db = new SQL(url, { max: 2 });
  const q = <T>(sql: string, params: unknown[] = []) => db.unsafe(sql, params) as Promise<T[]>;
  return {
    name: "postgres",
    leasedByOthers: async (owner) =>
      (
        await q<LeasedJob>(
          "SELECT id, kind, lease_owner FROM jobs WHERE state = 'leased' AND lease_owner IS DISTINCT FROM $1",
          [owner],
        )
      ).map((j) => ({ ...j, id: Number(j.id) })),
    backlog: async () =>
      (
        await q<Record<string, number>>(`SELECT
          (SELECT count(*) FROM mail_messages WHERE state = 'queued')::int AS mail_queued,
          (SELECT count(*) FROM jobs WHERE state IN ('available', 'leased'))::int AS jobs_open,
          (SELECT count(*) FROM deliveries WHERE state <> 'delivered')::int AS deliveries_open,
          (SELECT count(*) FROM events WHERE routing IS NULL)::int AS events_unrouted`)
      )[0]!,
    deadJobs: () =>
      q("SELECT id::text, kind, attempt, dead_reason, last_error FROM jobs WHERE state = 'dead' LIMIT 10"),
    async rows() {
      const events = (
        await q<{
          id: string;
          key: string | null;
          binding: string;
          mid: string | null;
          att: { sha256?: string }[] | null;
        }>(
          "SELECT id, idempotency_key AS key, binding, envelope #>> '{data,message_id}' AS mid, " +
            "envelope -> 'data' -> 'attachments' AS att FROM events WHERE tenant = $1",
          [TENANT],
        )
      ).map(({ att, ...e }) => ({ ...e, attachments: (att ?? []).flatMap((a) => (a.sha256 ? [a.sha256] : [])) }));
      const mailRows = await q<{ id: string; state: string; events: string[] | null; len: string; stored: string }>(
        `SELECT m.id, m.state, m.events, m.spool_length AS len,
           (SELECT coalesce(sum(length(c.bytes)), 0) FROM spool_chunks c
             WHERE c.segment = m.spool_segment AND c."offset" = m.spool_offset) AS stored
         FROM mail_messages m`,
      );
      const mail = new Map(mailRows.map((m) => [m.id, { state: m.state, events: m.events ?? [] }]));
      const deliveries = (
        await q<StoredRows["deliveries"][number]>(
          "SELECT id, event_id, state, attempts FROM deliveries WHERE tenant = $1 AND replay_of IS NULL",
          [TENANT],
        )
      ).map((d) => ({ ...d, attempts: Number(d.attempts) }));
      const jobsLeft = (
        await q<StoredRows["jobsLeft"][number]>(
          "SELECT id, kind, state, lease_owner, last_error FROM jobs WHERE state <> 'done'",
        )
      ).map((j) => ({ ...j, id: Number(j.id) }));
      const problems: string[] = [];
      for (const m of mailRows)
        if (Number(m.stored) < Number(m.len))
          problems.push(`message ${m.id}: ${m.stored} of its ${m.len} bytes stored`);
      const unreferenced = (
        await q<{ segment: string; offset: string; n: string }>(
          `SELECT segment, "offset", sum(length(bytes)) AS n FROM spool_chunks c WHERE NOT EXISTS
             (SELECT 1 FROM mail_messages m WHERE m.spool_segment = c.segment AND m.spool_offset = c."offset")
           GROUP BY segment, "offset"`,
        )
      ).map((c) => `${c.segment}@${c.offset} (${c.n} bytes)`);
      const blobs = new Set<string>();
      for (const b of await q<{ sha256: string; size: string; stored: string }>(
        `SELECT b.sha256, b.size, (SELECT coalesce(sum(length(c.bytes)), 0) FROM blob_chunks c WHERE c.sha256 = b.sha256)
           AS stored FROM blobs b`,
      )) {
        blobs.add(b.sha256);
        if (Number(b.stored) !== Number(b.size))
          problems.push(`blob ${b.sha256}: ${b.stored} of its ${b.size} bytes stored`);
      }
      return { events, mail, deliveries, jobsLeft, blobs, files: { problems, unreferenced } };
    },
    close: () => db.close(),
  };
}

/** Wait until the server has done everything it was given (read-only looks at its store; a string is a SQLite data dir). */
export async function drained(store: CrashStore | string, timeoutMs = 60_000): Promise<void> {
  const s = typeof store === "string" ? sqliteStore(store) : store;
  let last: Record<string, number> = {};
  try {
    await waitUntil(
      "the server to drain its work",
      async () => {
        last = await s.backlog();
        return Object.values(last).every((n) => n === 0);
      },
      timeoutMs,
      200,
    );
  } catch (e) {
    throw new Error(
      `${(e as Error).message}: ${JSON.stringify(last)}; dead jobs ${JSON.stringify(await s.deadJobs())}`,
    );
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

export interface Findings {
  events: number;
  deliveries: number;
  /** Broken guarantees, each one line; empty when all hold. */
  problems: string[];
  /**
   * Stored raw mail no row references (spool segment files on SQLite, spool chunks on PostgreSQL).
   * Known: the file spool (src/ingress/smtp/spool.ts) keeps the segment a process was writing when it
   * died, or one a full disk refused, until the next start or `spool_retention` purges it; on
   * PostgreSQL only spool retention removes them (another node may be between its two commits). No
   * acknowledged message is in one (its row would reference it).
   */
  unreferencedSegments: string[];
}

/**
 * The checks of every run, on the rows of a stopped server: each acknowledgement is exactly
 * one event; every event routed to exactly one delivery, delivered and seen by the receiver;
 * every delivery attempt audited; no job left; every stored message's bytes there, every blob
 * an attachment of some event and every attachment's blob there.
 */
export function checkRows(
  rows: StoredRows,
  acks: readonly Ack[],
  receiver: Receiver,
  audited: Map<string, number> | null,
): Findings {
  const problems: string[] = [];
  const eventsByKey = new Map<string, string[]>();
  // Webhooks by their webhook-id (the idempotency key); mail by its Message-ID (the key is a
  // hash of the message and its envelope, so the Message-ID is read from the envelope).
  for (const e of rows.events) {
    const k = `${e.binding}/${e.binding === "mail" ? e.mid : e.key}`;
    eventsByKey.set(k, [...(eventsByKey.get(k) ?? []), e.id]);
  }
  const eventIds = new Set([...eventsByKey.values()].flat());

  // Each acknowledged item: exactly one event.
  const hookAnswers = new Map<string, Set<string>>();
  for (const a of acks) {
    if (a.k === "hook") {
      hookAnswers.set(a.id, (hookAnswers.get(a.id) ?? new Set()).add(a.ack!));
      continue;
    }
    const row = rows.mail.get(a.ack!);
    if (!row) {
      problems.push(`acknowledged message ${a.ack} (${a.id}) has no row`);
      continue;
    }
    if (row.state !== "processed" || row.events.length !== 1 || !eventIds.has(row.events[0]!))
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
  const perEvent = new Map<string, number>();
  for (const d of rows.deliveries) {
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
  const known = new Set(rows.deliveries.map((d) => d.id));
  for (const id of receiver.seen.keys())
    if (!known.has(id)) problems.push(`the receiver got webhook-id ${id}, which is no delivery`);
  if (receiver.bad) problems.push(`${receiver.bad} deliveries with a bad signature`);

  // No job left behind, leased or otherwise.
  for (const j of rows.jobsLeft)
    problems.push(
      `job ${j.id} (${j.kind}) is ${j.state}${j.lease_owner ? ` by ${j.lease_owner}` : ""}${j.last_error ? `: ${j.last_error}` : ""}`,
    );

  // Raw mail: every message's bytes stored. Blobs: every one an attachment of some event, every attachment's there.
  problems.push(...rows.files.problems);
  const wanted = new Set(rows.events.flatMap((e) => e.attachments));
  for (const w of wanted) if (!rows.blobs.has(w)) problems.push(`blob ${w} is referenced but missing`);
  for (const b of rows.blobs) if (!wanted.has(b)) problems.push(`blob ${b} is referenced by no event`);

  return {
    events: eventIds.size,
    deliveries: rows.deliveries.length,
    problems,
    unreferencedSegments: rows.files.unreferenced,
  };
}

/** `checkRows` on the data dir of a stopped SQLite server. */
export function checkDataDir(
  dataDir: string,
  acks: readonly Ack[],
  receiver: Receiver,
  audited: Map<string, number> | null,
): Findings {
  return checkRows(sqliteRows(dataDir), acks, receiver, audited);
}

/** `checkRows` on a stopped server's store. */
export async function checkStore(
  store: CrashStore,
  acks: readonly Ack[],
  receiver: Receiver,
  audited: Map<string, number> | null,
): Promise<Findings> {
  return checkRows(await store.rows(), acks, receiver, audited);
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
