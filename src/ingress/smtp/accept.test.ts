import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import { tempStorages, until } from "../../../test/helpers/storage.ts";
import { ManualClock } from "../../core/clock.ts";
import { createLogger, Redactor } from "../../core/log.ts";
import { TEST_RECIPIENT } from "../../../test/helpers/smtp-ingress.ts";
import type { Job } from "../../store/index.ts";
import { type JobHandler, JobRunner } from "../../workers/job-runner.ts";
import { AcceptStage, MAIL_PROCESS_JOB, type MailProcessLocal } from "./accept.ts";
import { DataStage } from "./data.ts";
import { Spool } from "./spool.ts";

const session = {
  remoteAddress: "192.0.2.7",
  hostNameAppearsAs: "client.test",
  secure: true,
  envelope: { mailFrom: { address: "sender@example.com", args: false }, rcptTo: [] },
} as unknown as SMTPServerSession;

describe("the accept stage", () => {
  const storages = tempStorages();

  test("an accepted message's spool bytes are fsynced before its row commits; row and mail.process job commit together, then 250", async () => {
    const storage = storages();
    const spool = new Spool(join(storage.dir, "spool"));
    const clock = new ManualClock();
    const lines: string[] = [];
    const count = () => {};
    const data = new DataStage({ spool, maxMessageBytes: 1 << 20, clock, count });
    const accept = new AcceptStage({
      storage,
      clock,
      count,
      log: createLogger({ level: "info", redactor: new Redactor(), sink: (l) => lines.push(l) }),
    });

    // What happened, in order: the spool's append resolving (after its fdatasync) and the commit starting.
    const order: string[] = [];
    const append = spool.append.bind(spool);
    spool.append = (bytes) =>
      append(bytes).then((ref) => {
        order.push(`spooled after ${spool.syncs} fdatasync(s)`);
        return ref;
      });
    const run = storage.committer.run.bind(storage.committer);
    storage.committer.run = ((work: Parameters<typeof run>[0]) => {
      order.push(`commit after ${spool.syncs} fdatasync(s)`);
      return run(work);
    }) as typeof run;

    const raw = Buffer.from("Subject: hello\r\n\r\nbody\r\n");
    const stream = new PassThrough();
    stream.end(raw);
    const message = await data.receive(
      stream as unknown as SMTPServerDataStream,
      { recipients: [TEST_RECIPIENT], mailAt: clock.now() },
      new AbortController().signal,
    );
    const reply = await accept.commit(message, session);

    expect(order).toEqual(["spooled after 1 fdatasync(s)", "commit after 1 fdatasync(s)"]);
    const id = /^2\.0\.0 queued as (msg_\S+)$/.exec(reply)?.[1];
    expect(id).toBeDefined();
    const row = storage.mail.get(id!)!;
    expect(row).toMatchObject({
      state: "queued",
      receivedAt: clock.now(),
      remoteIp: "192.0.2.7",
      helo: "client.test",
      mailFrom: "sender@example.com",
      tls: true,
      size: raw.length,
      spoolSegment: message.spooled.segment,
      spoolOffset: message.spooled.offset,
      spoolLength: raw.length,
    });
    expect(row.recipients).toEqual([TEST_RECIPIENT]);
    expect(spool.read(message.spooled)).toEqual(new Uint8Array(raw));
    const [job] = await storage.queue.lease({ kinds: [MAIL_PROCESS_JOB], limit: 10, visibilityMs: 60_000 });
    expect(job?.payload).toEqual({ id });
    expect(lines.map((l) => JSON.parse(l))).toContainEqual(
      expect.objectContaining({ msg: "mail queued", queue_id: id, remote_ip: "192.0.2.7", recipients: 1, tls: true }),
    );
    await spool.close();
  });

  test("a commit that fails answers nothing but the error: no 250, no row, no job", async () => {
    const storage = storages();
    const spool = new Spool(join(storage.dir, "spool"));
    const clock = new ManualClock();
    const outcomes: string[] = [];
    const accept = new AcceptStage({
      storage,
      clock,
      count: (stage, outcome) => outcomes.push(`${stage} ${outcome}`),
      log: createLogger({ level: "info", redactor: new Redactor(), sink: () => {} }),
    });
    const raw = Buffer.from("Subject: x\r\n\r\ny\r\n");
    const spooled = await spool.append(raw);
    storage.committer.run = (() =>
      Promise.reject(Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" }))) as never;
    const e = await accept
      .commit({ raw, spooled, receivedAt: clock.now(), recipients: [TEST_RECIPIENT], trace: [] }, session)
      .catch((e) => e);
    expect(e.message).toBe("database or disk is full");
    expect(outcomes).toEqual(["commit unavailable"]);
    expect(storage.mail.spoolSegments().size).toBe(0);
    expect(await storage.queue.backlog()).toBe(0);
    await spool.close();
  });

  test("with a free place in the job runner, the job is born leased to it and starts after the commit with the row as stored and the bytes, without a claim", async () => {
    const storage = storages();
    const spool = new Spool(join(storage.dir, "spool"));
    const clock = new ManualClock();
    const runs: { job: Job; local: MailProcessLocal; leasesBefore: number }[] = [];
    const leases: unknown[] = [];
    const handler: JobHandler = async (job, ctx) =>
      void runs.push({ job, local: ctx.local as MailProcessLocal, leasesBefore: leases.length });
    const runner = new JobRunner({
      queue: storage.queue,
      handlers: new Map([[MAIL_PROCESS_JOB, handler]]),
      log: createLogger({ level: "error", redactor: new Redactor(), sink: () => {} }),
      concurrency: 1,
      visibilityMs: 60_000,
      pollMs: 60_000,
      owner: "pid:test",
    });
    runner.start();
    const lease = storage.queue.lease.bind(storage.queue);
    storage.queue.lease = (opts) => (leases.push(opts), lease(opts));
    const accept = new AcceptStage({
      storage,
      reserve: (kind) => runner.reserve(kind),
      clock,
      count: () => {},
      log: createLogger({ level: "error", redactor: new Redactor(), sink: () => {} }),
    });
    const raw = Buffer.from("Subject: born\r\n\r\nleased\r\n");
    const spooled = await spool.append(raw);
    const reply = await accept.commit(
      { raw, spooled, receivedAt: clock.now(), recipients: [TEST_RECIPIENT], trace: [] },
      session,
    );
    const id = /queued as (msg_\S+)$/.exec(reply)![1]!;
    // The 250 is answered before the job starts.
    expect(runs).toEqual([]);
    expect(await storage.queue.depth()).toMatchObject({ available: 0, leased: 1 });
    const since = leases.length;
    await until("the job to run", () => runs.length === 1, 2000);
    expect(runs[0]!.leasesBefore).toBe(since);
    expect(runs[0]!.job).toMatchObject({ kind: MAIL_PROCESS_JOB, payload: { id }, attempt: 1, state: "leased" });
    expect(runs[0]!.local.row).toEqual(storage.mail.get(id)!);
    expect(runs[0]!.local.raw).toEqual(raw);
    await until("its ack", async () => (await storage.queue.depth()).done === 1, 2000);

    // The one place is free again; a commit that fails gives it back too.
    const run = storage.committer.run.bind(storage.committer);
    storage.committer.run = (() => Promise.reject(new Error("disk I/O error"))) as never;
    await accept
      .commit({ raw, spooled, receivedAt: clock.now(), recipients: [TEST_RECIPIENT], trace: [] }, session)
      .catch(() => {});
    storage.committer.run = run;
    const slot = runner.reserve(MAIL_PROCESS_JOB);
    expect(slot).not.toBeNull();
    slot!.release();
    await runner.stop(1000);
    await spool.close();
  });
});
