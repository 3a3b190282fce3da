/**
 * The load of the crash suite, as a process of its own so that its record outlives every server
 * it talks to. It drives a real `agentowl serve` over SMTP and signed webhooks until SIGTERM,
 * then finishes the item each worker has in hand and exits.
 *
 *   bun test/crash/load.ts '<json LoadConfig>'
 *
 * Every answer it gets is one JSON line appended (appendFileSync, line by line) to `out` and
 * echoed on stdout; an acknowledgement is a line with `ack`:
 *
 *   {"k":"smtp1","id":"<message-id>","ack":"msg_…","code":250}     one message per connection
 *   {"k":"smtpN","id":"<message-id>","ack":"msg_…","code":250}     several per reused connection
 *   {"k":"hook","id":"<webhook-id>","ack":"evt_…","code":202}      (200 + dup: a repeat's first id)
 *   {"k":…,"id":…,"nack":452,"text":"452 4.3.1 …"}                  a refusal, with its answer
 *   {"k":…,"id":…,"nack":503,"retry_after":"60"}
 *
 * A connection that fails (the server died) is not a line: it is counted, and the worker tries
 * again. An SMTP message whose answer was lost is abandoned (a new Message-ID follows: an
 * unacknowledged message may or may not exist, either is allowed); a webhook is re-sent under
 * the same webhook-id until it is answered, as a provider would (guarantee 3 (docs/guarantees.md)).
 * On exit it prints one summary line: {"summary": {…}}.
 */
import { appendFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";
import { SmtpDialogue } from "../helpers/smtp.ts";

export interface LoadConfig {
  smtpPort: number;
  /** http://127.0.0.1:PORT */
  httpUrl: string;
  /** /ingress/webhook/<tenant>/<binding> */
  hookPath: string;
  /** The binding's Standard Webhooks secret (whsec_…). */
  hookSecret: string;
  /** The one recipient of every message. */
  rcpt: string;
  /** The record file (JSON lines). */
  out: string;
  /** Makes the Message-IDs and webhook-ids of this run unique. */
  run: string;
  /** Workers of each kind. */
  smtpOnce: number;
  smtpReuse: number;
  /** Messages per reused connection. */
  perConnection: number;
  hooks: number;
  /** Every n-th message carries an attachment (a blob). */
  attachEvery: number;
}

const cfg = JSON.parse(process.argv[2]!) as LoadConfig;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
});

const counts = {
  smtp1: 0,
  smtpN: 0,
  hook: 0,
  hook_dup: 0,
  nack: {} as Record<string, number>,
  connect_errors: 0,
  abandoned: 0,
};
function record(line: Record<string, unknown>): void {
  const text = `${JSON.stringify(line)}\n`;
  appendFileSync(cfg.out, text);
  process.stdout.write(text);
  if (line.ack) counts[line.k as "smtp1" | "smtpN" | "hook"]++;
  if (line.dup) counts.hook_dup++;
  if (line.nack !== undefined) counts.nack[`${line.k}:${line.nack}`] = (counts.nack[`${line.k}:${line.nack}`] ?? 0) + 1;
}

/** After a failed connection: a short pause, growing a little, so a dead server is not hammered. */
const pause = (failures: number) => Bun.sleep(Math.min(100, 5 * 2 ** Math.min(failures, 5)));

let serial = 0;
function message(kind: string): { id: string; text: string } {
  const n = serial++;
  const id = `<${cfg.run}-${kind}-${n}@load.crash.test>`;
  const head =
    `From: load@crash.test\r\nTo: ${cfg.rcpt}\r\nMessage-ID: ${id}\r\nDate: ${new Date().toUTCString()}\r\n` +
    `Subject: crash load ${n}\r\nMIME-Version: 1.0\r\n`;
  if (n % cfg.attachEvery !== 0)
    return { id, text: `${head}Content-Type: text/plain\r\n\r\nmessage ${n}\r\n${"load ".repeat(60)}\r\n` };
  // Every other attachment is the same bytes (one blob shared by many messages), the rest unique.
  const content =
    n % (2 * cfg.attachEvery) === 0
      ? "shared attachment of the crash load\n".repeat(40)
      : `attachment of ${id}\n`.repeat(40);
  const b64 = Buffer.from(content).toString("base64").replace(/.{76}/g, "$&\r\n");
  return {
    id,
    text:
      `${head}Content-Type: multipart/mixed; boundary="b-${n}"\r\n\r\n--b-${n}\r\nContent-Type: text/plain\r\n\r\nmessage ${n} with an attachment\r\n` +
      `--b-${n}\r\nContent-Type: application/octet-stream\r\n` +
      `Content-Disposition: attachment; filename="a-${n}.bin"\r\nContent-Transfer-Encoding: base64\r\n` +
      `\r\n${b64}\r\n--b-${n}--\r\n`,
  };
}

/** One SMTP worker: a connection, EHLO, `per` messages (one recipient each), QUIT; again until stopped. */
async function smtpWorker(kind: "smtp1" | "smtpN", per: number): Promise<void> {
  let failures = 0;
  while (!stopping) {
    let smtp: SmtpDialogue | null = null;
    try {
      const opened = await SmtpDialogue.open(cfg.smtpPort);
      smtp = opened.smtp;
      if (opened.greeting?.code !== 220) {
        record({ k: kind, nack: opened.greeting?.code ?? 0, text: opened.greeting?.raw, at: "greeting" });
        failures++;
        await pause(failures);
        continue;
      }
      if ((await smtp.command("EHLO load.crash.test")).code !== 250) throw new Error("EHLO refused");
      for (let i = 0; i < per && !stopping; i++) {
        const m = message(kind);
        let r;
        try {
          r = await smtp.sendMail("load@crash.test", [cfg.rcpt], m.text);
        } catch (e) {
          counts.abandoned++;
          throw e;
        }
        const end = r.end ?? r.data ?? r.rcpts.find((x) => x.code !== 250) ?? r.mail;
        const queued = r.end?.code === 250 ? /queued as (\S+)/.exec(r.end.raw)?.[1] : undefined;
        if (queued) {
          record({ k: kind, id: m.id, ack: queued, code: 250 });
          failures = 0;
        } else {
          record({ k: kind, id: m.id, nack: end.code, text: end.raw });
          failures++;
          break; // a fresh connection (and transaction) for the next message
        }
      }
      if (!smtp.closed) await smtp.command("QUIT").catch(() => {});
    } catch {
      counts.connect_errors++;
      failures++;
    } finally {
      smtp?.close();
    }
    if (failures) await pause(failures);
  }
}

/** One webhook worker: signed POSTs, each re-sent under its webhook-id until answered. */
async function hookWorker(w: number): Promise<void> {
  const signer = new Webhook(cfg.hookSecret);
  for (let n = 0; !stopping; n++) {
    const id = `${cfg.run}-hook-${w}-${n}`;
    const body = JSON.stringify({ load: cfg.run, worker: w, n });
    let failures = 0;
    // Once stopping, a few more tries: the server is up then and the item should end answered.
    for (let tries = 0; ; tries++) {
      if (stopping && tries > 20) {
        counts.abandoned++;
        break;
      }
      const at = new Date();
      try {
        const res = await fetch(cfg.httpUrl + cfg.hookPath, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "webhook-id": id,
            "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
            "webhook-signature": signer.sign(id, at, body),
          },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        if (res.status === 202 || res.status === 200) {
          const answer = JSON.parse(text) as { id: string; duplicate?: boolean };
          record({ k: "hook", id, ack: answer.id, code: res.status, ...(answer.duplicate ? { dup: true } : {}) });
          break;
        }
        record({
          k: "hook",
          id,
          nack: res.status,
          retry_after: res.headers.get("retry-after"),
          text: text.slice(0, 200),
        });
      } catch {
        counts.connect_errors++;
      }
      failures++;
      await pause(failures);
    }
  }
}

const t0 = performance.now();
await Promise.all([
  ...Array.from({ length: cfg.smtpOnce }, () => smtpWorker("smtp1", 1)),
  ...Array.from({ length: cfg.smtpReuse }, () => smtpWorker("smtpN", cfg.perConnection)),
  ...Array.from({ length: cfg.hooks }, (_, w) => hookWorker(w)),
]);
process.stdout.write(`${JSON.stringify({ summary: { ...counts, ms: Math.round(performance.now() - t0) } })}\n`);
process.exit(0);
