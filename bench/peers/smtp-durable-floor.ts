/**
 * The SMTP benchmark's floors: the least a durable SMTP accept can do on this stack. smtp-server
 * as it comes (no limits, budgets, recipients, rate limits, metrics or logs), each message
 * appended to one file and group-fdatasynced, then one row per message (id and where its bytes
 * are) group-committed to SQLite (WAL, synchronous=FULL), then the 250.
 *
 * `bun smtp-durable-floor.ts PORT DIR`: nothing more (the accept's floor).
 * `bun smtp-durable-floor.ts PORT DIR DNS_SERVERS`: the floor of the whole pipeline the SMTP
 * target asks for, accept and processing at once. After its 250 each message is processed as
 * the appliance's `mail.process` does, with the appliance's own parse and sender authentication
 * (src/mail/parse.ts, src/mail/sender-auth-thread.ts, the cheapest this stack has: small plain
 * messages parsed and checked on the event loop, a DNS cache) and the raw bytes' SHA-256; then
 * the event (an envelope of the appliance's shape, JSON) goes into a table with the appliance's
 * `events` columns and indexes and the message's row is marked processed, in one group commit.
 * No job queue, routing, spans, metrics, audit, tenants or idempotency checks: what the appliance
 * costs beside it is everything else. `processed_at` says when the backlog has drained.
 */
import { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { GroupFsync } from "../../src/core/group-fsync.ts";
import { createDnsResolver } from "../../src/mail/dns.ts";
import { parseMail } from "../../src/mail/parse.ts";
import { senderAuthThread } from "../../src/mail/sender-auth-thread.ts";
import type { Blobs } from "../../src/store/index.ts";

const [port, dir, dnsServers] = [Number(process.argv[2]), process.argv[3]!, process.argv[4]];
const fd = openSync(join(dir, "spool"), "a", 0o600);
const sync = new GroupFsync(() => fd);
let size = 0;
const db = new Database(join(dir, "floor.db"), { create: true });
db.run("PRAGMA journal_mode = WAL");
db.run("PRAGMA synchronous = FULL");
db.exec(
  `CREATE TABLE IF NOT EXISTS mail (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, processed_at INTEGER);
CREATE TABLE IF NOT EXISTS events (id text PRIMARY KEY NOT NULL, tenant text NOT NULL, type text NOT NULL, channel text NOT NULL,
  agent text, binding text, idempotency_key text, received_at integer NOT NULL, envelope text NOT NULL, trace text NOT NULL, routing text);
CREATE INDEX IF NOT EXISTS events_tenant ON events (tenant, id);
CREATE INDEX IF NOT EXISTS events_type ON events (type, id);
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency ON events (tenant, binding, idempotency_key) WHERE idempotency_key IS NOT NULL;`,
);
const insertMail = db.prepare<{ id: number }, [number, number, number]>(
  "INSERT INTO mail (at, offset, length) VALUES (?, ?, ?) RETURNING id",
);
const insertEvent = db.prepare<never, [string, string, string, number, string]>(
  "INSERT INTO events (id, tenant, type, channel, agent, binding, idempotency_key, received_at, envelope, trace, routing) " +
    "VALUES (?, 'beta', 'email.received', 'email', ?, 'mail', ?, ?, ?, '[]', NULL) ON CONFLICT DO NOTHING",
);
const processed = db.prepare<never, [number, number]>("UPDATE mail SET processed_at = ? WHERE id = ?");

/** Units handed over in one turn of the event loop share one transaction (group commit, as the appliance's). */
type Unit = () => (() => void) | undefined;
let batch: Unit[] = [];
function commit(): void {
  const units = batch;
  batch = [];
  db.run("BEGIN IMMEDIATE");
  const after = units.map((unit) => unit());
  db.run("COMMIT");
  for (const done of after) done?.();
}
const inCommit = (unit: Unit) => {
  // With processing, a commit waits 1 ms for company, as the appliance's mail commits do.
  if (batch.length === 0) dnsServers ? setTimeout(commit, 1) : setImmediate(commit);
  batch.push(unit);
};

const resolver = dnsServers ? createDnsResolver({ servers: dnsServers.split(","), timeoutMs: 500 }) : null;
/** The bench's messages are small and plain: nothing goes to the blob store. */
const noBlobs = {
  put: () => {
    throw new Error("the floor stores no attachments");
  },
} as unknown as Blobs;
let n = 0;

async function processMessage(
  id: number,
  raw: Buffer,
  session: {
    remoteAddress: string;
    hostNameAppearsAs: string;
    envelope: { mailFrom: false | { address: string }; rcptTo: { address: string }[] };
  },
): Promise<void> {
  // Read before the first await: the session takes the connection's next message meanwhile.
  const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
  const rcpts = session.envelope.rcptTo.map((r) => r.address);
  const [remoteIp, helo] = [session.remoteAddress, session.hostNameAppearsAs];
  const [mail, auth] = await Promise.all([
    parseMail(raw, { blobs: noBlobs }),
    senderAuthThread.check({ raw, remoteIp, helo, mailFrom, mta: "floor.lan" }, { resolver: resolver! }),
  ]);
  const digest = createHash("sha256").update(raw).digest("hex");
  const at = Date.now();
  const eventId = `evt_${at.toString(36)}${(++n).toString(36).padStart(8, "0")}`;
  const envelope = JSON.stringify({
    id: eventId,
    version: 1,
    type: "email.received",
    tenant: "beta",
    agent: rcpts[0],
    channel: "email",
    received_at: new Date(at).toISOString(),
    source: {
      binding: "mail",
      remote_ip: remoteIp,
      helo,
      mail_from: mailFrom,
      rcpt_to: rcpts,
    },
    idempotency_key: `mail:${digest}`,
    data: { ...mail, auth },
  });
  inCommit(() => {
    insertEvent.run(eventId, rcpts[0]!, `mail:${digest}`, at, envelope);
    processed.run(Date.now(), id);
    return undefined;
  });
}

const server = new SMTPServer({
  disabledCommands: ["AUTH", "STARTTLS"],
  logger: false,
  disableReverseLookup: true,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", async () => {
      const raw = Buffer.concat(chunks);
      const offset = size;
      size += raw.length;
      writeSync(fd, raw);
      await sync.sync();
      inCommit(() => {
        const { id } = insertMail.get(Date.now(), offset, raw.length)!;
        return () => {
          if (resolver) void processMessage(id, raw, session as never);
          callback(null, "queued");
        };
      });
    });
  },
});
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
