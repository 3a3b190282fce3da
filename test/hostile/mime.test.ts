/**
 * Hostile MIME (guarantee 9, docs/guarantees.md): every corpus email, mutated at random offsets and truncated at a
 * random offset, sent over SMTP to a real `agentowl serve`. The server stays up and unstalled, and
 * each message it answers `250 queued as` becomes its own processed message and event (with
 * `parse_warnings` saying where it was read in a degraded way), never a stuck or failed job.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { HostileServer, mailRows, mutate, seeded, suiteTimer } from "../helpers/hostile.ts";
import { waitUntil } from "../helpers/process.ts";
import { SmtpDialogue } from "../helpers/smtp.ts";

setDefaultTimeout(150_000);

const CORPUS = join(import.meta.dir, "..", "..", "..", "shared", "corpus", "email");
const hasCorpus = existsSync(CORPUS);
const rnd = seeded("mime");
const done = suiteTimer("mime");
const RCPT = "hello@beta.agentowl.lan";
let hs: HostileServer;

function emails(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? emails(join(dir, d.name)) : d.name.endsWith(".eml") ? [join(dir, d.name)] : [],
  );
}

/** The DATA payload for raw bytes: CRLF line ends, dot-stuffed (RFC 5321 §4.5.2), the final dot. */
function dataOf(raw: Uint8Array): Buffer {
  const text = Buffer.from(raw).toString("latin1").replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
  return Buffer.from(`${text}${text.endsWith("\r\n") ? "" : "\r\n"}.\r\n`, "latin1");
}

beforeAll(async () => {
  if (!hasCorpus) return;
  hs = await HostileServer.start("mime", { AGENTOWL_SMTP_RATE_PER_IP: "100000" });
  expect((await hs.call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  expect(
    (
      await hs.call("POST", "/v1/tenants/beta/bindings", {
        body: { name: "mail", type: "email", addresses: ["hello"] },
      })
    ).status,
  ).toBe(201);
});

afterAll(async () => {
  await hs?.close();
  done();
});

describe.skipIf(!hasCorpus)("mutated and truncated corpus mail", () => {
  test("every mutated or truncated corpus email accepted over SMTP becomes its own processed event, the server unstalled", async () => {
    const fam = await hs.family("mime: corpus mutated and truncated");
    const files = emails(CORPUS).sort();
    const accepted: { id: string; what: string }[] = [];
    let { smtp } = await SmtpDialogue.open(hs.smtpPort);
    expect((await smtp.command("EHLO mime.example.com")).code).toBe(250);
    for (const file of files) {
      const raw = new Uint8Array(readFileSync(file));
      const variants: [string, Uint8Array][] = [
        ["mutated", mutate(rnd, raw, 1 + rnd.int(8))],
        ["truncated", raw.subarray(0, rnd.int(raw.length))],
      ];
      for (const [kind, mutated] of variants) {
        const what = `${relative(CORPUS, file)} ${kind}`;
        // A header of its own: no two cases are the same bytes, which could be a true retransmission.
        const bytes = Buffer.concat([
          Buffer.from(`X-Hostile-Case: ${accepted.length}-${kind}-${rnd.int(1e9)}\r\n`),
          mutated,
        ]);
        fam.try(kind);
        if (smtp.closed) {
          ({ smtp } = await SmtpDialogue.open(hs.smtpPort));
          await smtp.command("EHLO mime.example.com");
        }
        expect((await smtp.command("MAIL FROM:<corpus@example.com>")).code, what).toBe(250);
        expect((await smtp.command(`RCPT TO:<${RCPT}>`)).code, what).toBe(250);
        expect((await smtp.command("DATA")).code, what).toBe(354);
        smtp.write(dataOf(bytes));
        const end = await smtp.reply(30_000);
        fam.saw(end.code);
        expect(end.code, `${what}: ${end.raw}`).toBeOneOf([250, 552, 554]);
        const id = /queued as (msg_[0-9A-Z]{26})/.exec(end.raw)?.[1];
        if (id) accepted.push({ id, what });
      }
    }
    smtp.close();

    const folded: string[] = [];
    const db = mailRows(hs.dataDir);
    try {
      const rowOf = db.row;
      await waitUntil(
        `${accepted.length} messages processed`,
        () => accepted.every(({ id }) => rowOf(id)?.state !== "queued"),
        120_000,
        200,
      );
      const eventIds = new Map<string, string>();
      let degraded = 0;
      for (const { id, what } of accepted) {
        const row = rowOf(id)!;
        expect(row.state, `${what}: ${row.error}`).toBe("processed");
        const events = JSON.parse(row.events ?? "[]") as string[];
        expect(events.length, `${what} has an event`).toBe(1);
        const first = eventIds.get(events[0]!);
        if (first) folded.push(`${what} folded into the event of ${first}`);
        else eventIds.set(events[0]!, what);
      }
      for (const id of eventIds.keys()) {
        const r = await hs.call("GET", `/v1/events/${id}`);
        expect(r.status).toBe(200);
        expect(Array.isArray(r.body.data.parse_warnings), `${id}: parse_warnings`).toBe(true);
        if (r.body.data.parse_warnings.length) degraded++;
      }
      const stuck = { n: db.unfinishedJobs() };
      console.log(
        `[hostile] mime: ${accepted.length} accepted, ${eventIds.size} distinct events ` +
          `(${degraded} with parse warnings), ${folded.length} folded into another message's ` +
          `event, ${stuck.n} jobs not done`,
      );
      expect(stuck.n).toBe(0);
    } finally {
      db.close();
    }
    await fam.end();
    // An accepted message always yields its recipient's event; a mutated copy with the same
    // Message-ID is another message, not a retransmission (guarantees 1 and 3, docs/guarantees.md).
    expect(folded.slice(0, 5), `${folded.length} accepted messages produced no event of their own`).toEqual([]);
  });
});
