import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { checkpointFile } from "../audit/anchor.ts";
import { loadChainKeys } from "../audit/keys.ts";
import { newId } from "../core/ids.ts";
import { lockDataDir, openSqliteStorage, prepareDataDir } from "../store/index.ts";
import { loadKeyring } from "../vault/crypto.ts";
import { testEnvelope } from "../../test/helpers/events.ts";
import { testPostgres } from "../../test/helpers/postgres.ts";
import { killLeftovers, runAgentowl, startAgentowl } from "../../test/helpers/process.ts";

const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`store migrate tests skipped: ${pg}`);
afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
afterEach(killLeftovers);

const root = mkdtempSync(join(tmpdir(), "agentowl-migrate-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const TOKEN = `aow_${"m".repeat(43)}`;
const sha256Hex = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

/**
 * A stopped appliance's data dir, written through the storage contract with the audit chain keyed
 * and checkpointed as `serve` does: a tenant, an admin token, a console user and session, events
 * with an attachment blob, deliveries and attempts, an approval, a mail row with its spool
 * segment, the agent pool's rows, a sealed secret, jobs, outbox entries and a cursor, kv.
 */
async function dataDir(): Promise<{ dir: string; eventIds: string[] }> {
  const dir = join(root, `data-${newId("req")}`);
  prepareDataDir(dir);
  const masterKeyFile = join(dir, "master.key");
  const { ring } = loadKeyring(masterKeyFile);
  const storage = openSqliteStorage({ dir });
  const { keys } = loadChainKeys({ masterKeyFile, master: ring.sealing, credential: false });
  storage.audit.anchor({ keys, file: checkpointFile(dir), everyEntries: 5, everyMs: 0 });
  const eventIds: string[] = [];
  try {
    await storage.resources.transact((tx) =>
      storage.resources.putTx(
        tx,
        { tenant: "acme", kind: "tenants", name: "acme" },
        { name: "acme" },
        { mode: "create", actor: "test" },
      ),
    );
    await storage.tokens.create({
      name: "admin",
      hash: sha256Hex(TOKEN),
      scopes: ["admin"],
      expiresAt: null,
      createdBy: "test",
    });
    const blob = await storage.blobs.put(new TextEncoder().encode("attachment bytes"));
    const segment = "000000000000001-0000abcd.spool";
    writeFileSync(join(dir, "spool", segment), "From: a@b\r\n\r\nhello\r\n");
    await storage.committer.run((tx) => {
      const user = storage.users.createTx(tx, {
        username: "ops",
        passwordHash: "$argon2id$v=19$m=65536,t=2,p=1$x$y",
        role: "admin",
        tenants: [],
      });
      storage.sessions.createTx(tx, { id: sha256Hex("cookie"), userId: user.id, csrf: "c", expiresAt: tx.now + 1e6 });
      for (let i = 0; i < 30; i++) {
        const env = testEnvelope("acme", i, i === 0 ? { data: { attachments: [{ sha256: blob.sha256 }] } } : {});
        const { id } = storage.events.insertTx(tx, env, [], { matched: ["r"], at: tx.now });
        eventIds.push(id);
        const dlv = newId("dlv");
        storage.events.insertDeliveryTx(tx, {
          id: dlv,
          eventId: id,
          tenant: "acme",
          endpoint: "crm",
          state: "delivered",
          attempts: 1,
          lastStatus: 200,
          createdAt: tx.now,
          updatedAt: tx.now,
        });
        storage.events.insertAttemptTx(tx, {
          deliveryId: dlv,
          attempt: 1,
          startedAt: tx.now,
          latencyMs: 4,
          status: 200,
        });
        tx.enqueue({ kind: "test.job", payload: { i } });
        tx.emit({ topic: "event.received", tenant: "acme", payload: { id } });
      }
      storage.mail.insertTx(tx, {
        id: "msg_1",
        receivedAt: tx.now,
        remoteIp: "127.0.0.1",
        helo: "client",
        mailFrom: "a@b",
        recipients: [{ address: "bot@acme.example", tenant: "acme", agent: "bot", tag: null, binding: "mail" }],
        tls: true,
        size: 20,
        spool: { segment, offset: 0, length: 20 },
        trace: [],
      });
      storage.secrets.insertTx(tx, {
        tenant: "acme",
        name: "crm-key",
        version: 1,
        masterKeyId: ring.sealing.id,
        wrappedKey: new Uint8Array([1, 2, 3, 0, 255]),
        sealedValue: new Uint8Array([9, 8, 7]),
        createdAt: tx.now,
        createdBy: "test",
        expiresAt: null,
        rotationPeriodMs: null,
        format: "opaque",
      });
      const rt = storage.agents.insertRuntimeTx(tx, {
        id: "rt_1",
        isolation: "process",
        tokenHash: sha256Hex("rt"),
        dir: "/tmp/rt_1",
        socket: "/tmp/rt_1.sock",
        cold: true,
        createdAt: tx.now,
      });
      storage.agents.insertToolTx(tx, {
        runtimeId: rt.id,
        tenant: "acme",
        tool: "reply",
        plugin: "email",
        provisioning: "pool",
        state: "active",
        resourceId: "bot@acme.example",
        config: { a: 1 },
        secretRef: null,
      });
      storage.agents.insertToolCallTx(tx, {
        runtimeId: rt.id,
        tenant: "acme",
        eventId: eventIds[0]!,
        tool: "reply",
        args: { text: "hi" },
        state: "done",
        approvalId: null,
        decision: null,
        result: { ok: true },
        error: null,
      });
    });
    await storage.approvals.park({
      tenant: "acme",
      eventId: eventIds[1]!,
      action: { kind: "dispatch", target: "crm" },
      policy: { name: "p", version: 1, rule: 0, reason: "big" },
      expiresInMs: 3_600_000,
      onExpiry: "deny",
    });
    for (let i = 0; i < 12; i++) await storage.audit.append({ actor: "test", action: "test.write", details: { i } });
    await storage.outbox.advance("router", 10);
    await storage.probeWrite();
    await storage.queue.lease({ limit: 3, visibilityMs: 60_000 });
  } finally {
    await storage.close();
  }
  return { dir, eventIds };
}

const env = (dir: string, extra: Record<string, string> = {}) => ({
  AGENTOWL_DATA_DIR: dir,
  AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
  AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
  ...extra,
});

test.skipIf(skip)(
  "a stopped SQLite appliance moves to an empty PostgreSQL database: counts match, the audit chain verifies there, a node on it serves the events, and a second migrate is refused",
  async () => {
    if (typeof pg === "string") return;
    const { dir, eventIds } = await dataDir();
    const url = await pg.freshDatabase();
    const checkpointsBefore = readFileSync(checkpointFile(dir), "utf8");

    const run = await runAgentowl(["store", "migrate", "--to", url], { cwd: root, env: env(dir), timeoutMs: 120_000 });
    expect(run.stderr).toContain("copy events: 30 of 30 done");
    if (process.env.SHOW) console.log(run.stderr, run.stdout);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^\s+events\s+30\s+30$/m);
    expect(run.stdout).toMatch(/^\s+audit_log\s+(\d+)\s+\1$/m);
    expect(run.stdout).toContain("blobs: 1 referenced");
    expect(run.stdout).toContain("audit log intact on PostgreSQL");
    expect(run.stdout).toContain("To switch: set database_url");
    expect(run.stdout).not.toContain("DIFFERENT");
    // Checking never wrote to the data dir's checkpoints.
    expect(readFileSync(checkpointFile(dir), "utf8")).toBe(checkpointsBefore);

    const sql = new SQL(url, { max: 1 });
    try {
      const [secret] = await sql`SELECT wrapped_key, sealed_value FROM secrets`;
      expect([...(secret.wrapped_key as Uint8Array)]).toEqual([1, 2, 3, 0, 255]);
      const [seq] = await sql`SELECT last_value FROM jobs_id_seq`;
      expect(Number(seq.last_value)).toBe(30);
      const [leased] = await sql`SELECT count(*)::int AS n FROM jobs WHERE state = 'leased'`;
      expect(leased.n).toBe(3);
      // The raw mail moved into the database, at the place its row names, for every node to read.
      const [raw] = await sql`SELECT segment, "offset", bytes FROM spool_chunks`;
      expect([raw.segment, Number(raw.offset)]).toEqual(["000000000000001-0000abcd.spool", 0]);
      expect(Buffer.from(raw.bytes as Uint8Array).toString()).toBe("From: a@b\r\n\r\nhello\r\n");
      // The checkpoints every node anchors to.
      const [cps] = await sql`SELECT count(*)::int AS n FROM audit_checkpoints`;
      expect(cps.n).toBeGreaterThan(0);
    } finally {
      await sql.close();
    }

    // The same data dir, switched to PostgreSQL: the migrated events are served.
    const server = startAgentowl(["serve"], { cwd: root, env: env(dir, { AGENTOWL_DATABASE_URL: url }) });
    const base = String((await server.waitForLog("agentowl serving", 60_000)).http);
    for (const id of [eventIds[0]!, eventIds[29]!]) {
      const res = await fetch(`${base}/v1/events/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { id: string }).id).toBe(id);
    }
    const verify = await fetch(`${base}/v1/audit/verify`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(((await verify.json()) as { ok: boolean }).ok).toBe(true);
    server.proc.kill("SIGTERM");
    await server.exit(30_000);

    const again = await runAgentowl(["store", "migrate", "--to", url], { cwd: root, env: env(dir), timeoutMs: 60_000 });
    expect(again.code).toBe(4);
    expect(again.stderr).toContain("is not empty: it already holds agentowl data");
    await pg.drop(url);
  },
  240_000,
);

test.skipIf(skip)(
  "migrate is refused while a server holds the data dir, and into a database with other tables",
  async () => {
    if (typeof pg === "string") return;
    const dir = join(root, "held");
    prepareDataDir(dir);
    const s = openSqliteStorage({ dir });
    await s.close();
    const url = await pg.freshDatabase();
    const lock = lockDataDir(dir);
    try {
      const held = await runAgentowl(["store", "migrate", "--to", url], { cwd: root, env: env(dir) });
      expect(held.code).toBe(4);
      expect(held.stderr).toContain("a server holds the data dir");
    } finally {
      lock.release();
    }
    const sql = new SQL(url, { max: 1 });
    await sql`CREATE TABLE orders (id int)`;
    await sql.close();
    const other = await runAgentowl(["store", "migrate", "--to", url], { cwd: root, env: env(dir) });
    expect(other.code).toBe(4);
    expect(other.stderr).toContain("tables that are not agentowl's (public.orders)");
    await pg.drop(url);
  },
);
