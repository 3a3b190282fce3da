/**
 * The SMTP benchmark's floor: the least a durable SMTP accept can do on this stack, and nothing
 * else. smtp-server as it comes (no limits, budgets, recipients, rate limits, metrics or logs),
 * each message appended to one file and group-fdatasynced, then one row per message (id and
 * where its bytes are) group-committed to SQLite (WAL, synchronous=FULL), then the 250. No
 * processing afterwards. `bun smtp-durable-floor.ts PORT DIR`.
 */
import { Database } from "bun:sqlite";
import { openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { GroupFsync } from "../../src/core/group-fsync.ts";

const [port, dir] = [Number(process.argv[2]), process.argv[3]!];
const fd = openSync(join(dir, "spool"), "a", 0o600);
const sync = new GroupFsync(() => fd);
let size = 0;
const db = new Database(join(dir, "floor.db"), { create: true });
db.run("PRAGMA journal_mode = WAL");
db.run("PRAGMA synchronous = FULL");
db.run(
  "CREATE TABLE IF NOT EXISTS mail (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL)",
);
const insert = db.prepare<never, [number, number, number]>("INSERT INTO mail (at, offset, length) VALUES (?, ?, ?)");
let batch: { offset: number; length: number; done: () => void }[] = [];
function commit(): void {
  const rows = batch;
  batch = [];
  db.run("BEGIN IMMEDIATE");
  for (const r of rows) insert.run(Date.now(), r.offset, r.length);
  db.run("COMMIT");
  for (const r of rows) r.done();
}

const server = new SMTPServer({
  disabledCommands: ["AUTH", "STARTTLS"],
  logger: false,
  disableReverseLookup: true,
  onData(stream, _session, callback) {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", async () => {
      const raw = Buffer.concat(chunks);
      const offset = size;
      size += raw.length;
      writeSync(fd, raw);
      await sync.sync();
      // Rows that arrive in the same turn share one commit (group commit, as the appliance's).
      if (batch.length === 0) setImmediate(commit);
      batch.push({ offset, length: raw.length, done: () => callback(null, "queued") });
    });
  },
});
server.listen(port, "127.0.0.1");
