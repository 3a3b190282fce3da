/**
 * `agentowl serve` as systemd runs it: a real process on a temp data dir, HTTP on 127.0.0.1:0,
 * JSON logs on stdout, stopped by a signal. The graceful drain is tested in process, where the
 * test can hold a job in flight.
 */
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { type Job, openSqliteStorage } from "../../src/store/index.ts";
import { apiCaller } from "../helpers/api.ts";
import { DKIM_KEY_RECORD, signedMessage } from "../helpers/dkim.ts";
import { startDnsServer } from "../helpers/dns-server.ts";
import {
  killLeftovers,
  refusesConnections,
  type Running,
  serveAgentowl,
  startAgentowl,
  waitUntil,
} from "../helpers/process.ts";
import { SmtpDialogue } from "../helpers/smtp.ts";

// bun test does not read `timeout` from bunfig.toml; each test here takes well under a second or two.
setDefaultTimeout(20_000);

const root = mkdtempSync(join(tmpdir(), "agentowl-serve-"));
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
const dataDir = (): string => join(root, `data-${++n}`);

const TOKEN = "bootstrap-3e9d7c1a5b2f8e4d6c0a7b9f";

/** Start `agentowl serve` and wait for the line that says where it listens. */
async function serve(
  env: Record<string, string> = {},
  dir = dataDir(),
): Promise<{ server: Running; url: string; dir: string }> {
  const server = startAgentowl(["serve"], {
    cwd: root,
    env: { AGENTOWL_DATA_DIR: dir, AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0", ...env },
  });
  const serving = await server.waitForLog("agentowl serving");
  expect(serving.http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  return { server, url: serving.http as string, dir };
}

/** A port nothing listens on right now (for the one test whose log cannot say which port it got). */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

describe("agentowl serve", () => {
  test("GET /healthz answers 200 with JSON status ok", async () => {
    const { url } = await serve();
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await res.json()).toMatchObject({ status: "ok" });
  });

  test("GET /readyz is ready: accepting, database, jobs and outbox all ok; it says how agents are isolated; the disk has room", async () => {
    const { url } = await serve();
    const res = await fetch(`${url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: "ready",
      checks: {
        accepting: { ok: true },
        database: { ok: true },
        jobs: { ok: true },
        outbox: { ok: true },
        agents: { ok: true, detail: expect.stringMatching(/^isolation: (bwrap|sandbox-exec|process)/) },
        disk: { ok: true },
      },
    });
  });

  test("GET /metrics is Prometheus text: queue depth, commits, batch sizes, memory, requests", async () => {
    const { url } = await serve();
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200); // a durable write: one commit at least
    // A request is counted once its response has gone out, so the count may trail the answer.
    let text = "";
    await waitUntil("/metrics to count the /readyz request", async () => {
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toStartWith("text/plain");
      text = await res.text();
      return text.includes(`agentowl_http_requests_total{method="GET",route="/readyz",status="200"} 1`);
    });
    const value = (series: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(series + " "));
      expect(line, `no series ${series} in:\n${text}`).toBeDefined();
      return Number(line!.slice(series.length + 1));
    };
    expect(value(`agentowl_queue_jobs{state="available"}`)).toBe(0);
    expect(value(`agentowl_queue_jobs{state="dead"}`)).toBe(0);
    // The done jobs are not counted per scrape (the retention keeps them: a count would grow with them).
    expect(text).not.toContain(`agentowl_queue_jobs{state="done"}`);
    expect(value(`agentowl_commits_total{outcome="ok"}`)).toBeGreaterThanOrEqual(1);
    expect(value(`agentowl_commit_batch_size_bucket{le="+Inf"}`)).toBeGreaterThanOrEqual(1);
    expect(value("process_resident_memory_bytes")).toBeGreaterThan(1_000_000);
    expect(value(`agentowl_http_requests_total{method="GET",route="/healthz",status="200"}`)).toBe(1);
    expect(value(`agentowl_http_requests_total{method="GET",route="/readyz",status="200"}`)).toBe(1);
  });

  test("an unknown route is a 404 problem document", async () => {
    const { url } = await serve();
    const res = await fetch(`${url}/no/such/route`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ title: "Not found", status: 404 });
    expect(body.type).toMatch(/^https:\/\/.+\/not-found$/);
    expect(typeof body.detail).toBe("string");
  });

  test("a second serve on the same data dir exits 4 with one line: the dir is in use", async () => {
    const { server, dir } = await serve();
    const second = startAgentowl(["serve"], {
      cwd: root,
      env: { AGENTOWL_DATA_DIR: dir, AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0" },
    });
    expect(await second.exit(10_000)).toBe(4);
    expect(second.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(second.stderr).toContain("in use");
    expect(second.stderr).not.toContain("    at ");
    // The first one did not notice.
    expect(server.proc.exitCode).toBeNull();
  });

  test("a port held by another process is refused with one line, exit 1, never shared", async () => {
    const { server, url } = await serve();
    const second = startAgentowl(["serve"], {
      cwd: root,
      env: {
        AGENTOWL_DATA_DIR: dataDir(),
        AGENTOWL_HTTP_LISTEN: new URL(url).host,
        AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      },
    });
    expect(await second.exit(10_000)).toBe(1);
    expect(second.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(second.stderr).toContain("EADDRINUSE");
    expect(server.proc.exitCode).toBeNull();
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal} stops it cleanly: exit 0 within the shutdown timeout, "stopped" not forced, the port closed`, async () => {
      const { server, url } = await serve({ AGENTOWL_SHUTDOWN_TIMEOUT: "5s" });
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      server.proc.kill(signal);
      expect(await server.exit(5_000)).toBe(0);
      expect(server.logs.find((l) => l.msg === "signal received")).toMatchObject({ signal });
      expect(server.logs.find((l) => l.msg === "stopped")).toMatchObject({
        level: "info",
        forced: false,
        jobs_cut_off: 0,
      });
      expect(await refusesConnections(url)).toBe(true);
      expect(server.stderr).toBe("");
    });
  }

  test("every stdout line is a JSON object with time, level and msg", async () => {
    const { server, url } = await serve({ AGENTOWL_LOG_LEVEL: "debug" });
    await fetch(`${url}/readyz`);
    await fetch(`${url}/nowhere`);
    server.proc.kill("SIGTERM");
    expect(await server.exit(10_000)).toBe(0);
    const lines = server.lines.filter((l) => l !== "");
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(Number.isNaN(Date.parse(entry.time as string)), line).toBe(false);
      expect(["debug", "info", "warn", "error"]).toContain(entry.level as string);
      expect(typeof entry.msg, line).toBe("string");
    }
  });

  test("AGENTOWL_LOG_LEVEL=warn keeps info lines out of the log", async () => {
    // Nothing at warn is logged by a clean start, so the log cannot say where it listens.
    const url = `http://127.0.0.1:${freePort()}`;
    const server = startAgentowl(["serve"], {
      cwd: root,
      env: {
        AGENTOWL_DATA_DIR: dataDir(),
        AGENTOWL_HTTP_LISTEN: url.slice("http://".length),
        AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_LOG_LEVEL: "warn",
      },
    });
    await waitUntil("/healthz to answer", () =>
      fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () =>
          server.proc.exitCode !== null &&
          Promise.reject(new Error(`serve exited ${server.proc.exitCode}: ${server.stderr}`)),
      ),
    );
    server.proc.kill("SIGTERM");
    expect(await server.exit(10_000)).toBe(0);
    expect(server.logs.filter((l) => l.level === "info" || l.level === "debug")).toEqual([]);
  });

  test("a DKIM-signed mail over SMTP is verified in the sender-authentication thread: dkim and dmarc pass", async () => {
    const dns = await startDnsServer({
      "s1._domainkey.example.com": { TXT: [DKIM_KEY_RECORD] },
      "example.com": { TXT: ["v=spf1 -all"] },
      "_dmarc.example.com": { TXT: ["v=DMARC1; p=reject"] },
    });
    try {
      const { server, url, smtpPort } = await serveAgentowl({
        cwd: root,
        dataDir: dataDir(),
        token: TOKEN,
        env: { AGENTOWL_DNS_SERVERS: dns.servers.join(","), AGENTOWL_DNS_TIMEOUT: "2s" },
      });
      const api = apiCaller(() => url, TOKEN);
      expect((await api("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
      const binding = { name: "mail", type: "email", addresses: ["hello"] };
      expect((await api("POST", "/v1/tenants/beta/bindings", { body: binding })).status).toBe(201);
      const { smtp } = await SmtpDialogue.open(smtpPort);
      await smtp.command("EHLO mail.example.com");
      // Signed twice, over the whole body and over its first half: it goes to the thread.
      const raw = await signedMessage(200_000, [undefined, 100_000]);
      const r = await smtp.sendMail("alice@example.com", ["hello@beta.agentowl.lan"], raw.toString("latin1"));
      expect(r.end!.code).toBe(250);
      smtp.close();
      let event: Record<string, any> | undefined;
      await waitUntil(
        "the mail's event",
        async () => {
          const list = await api("GET", "/v1/events?tenant=beta&type=email.received");
          event = (list.body as { items: Record<string, any>[] }).items[0];
          return event !== undefined;
        },
        20_000,
      );
      expect(event!.data.auth).toEqual({ spf: "fail", dkim: "pass", dmarc: "pass", arc: "none" });
      expect(event!.data.auth_details.dkim.map((d: { result: string }) => d.result)).toEqual(["pass", "pass"]);
      server.proc.kill("SIGTERM");
      expect(await server.exit(10_000)).toBe(0);
    } finally {
      await dns.close();
    }
  });

  test("the bootstrap token never appears in its output", async () => {
    const { server, url } = await serve({ AGENTOWL_BOOTSTRAP_TOKEN: TOKEN, AGENTOWL_LOG_LEVEL: "debug" });
    await fetch(`${url}/readyz`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await fetch(`${url}/no/${TOKEN}`);
    server.proc.kill("SIGTERM");
    expect(await server.exit(10_000)).toBe(0);
    expect(server.lines.length).toBeGreaterThan(0);
    expect(server.lines.join("\n") + server.stderr).not.toContain(TOKEN);
  });
});

describe("graceful stop (in process)", () => {
  const apps: App[] = [];
  const releases: (() => void)[] = [];
  afterEach(async () => {
    for (const release of releases.splice(0)) release();
    await Promise.all(apps.splice(0).map((a) => a.stop()));
  });

  /** An app on a temp data dir whose one job kind, test.slow, runs `handler`. */
  async function start(shutdownTimeout: string, handler: (job: Job) => Promise<void>) {
    const dir = dataDir();
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      level: "debug",
      redactor: new Redactor(),
      sink: (line) => lines.push(JSON.parse(line)),
    });
    const config = loadConfig({
      env: {
        AGENTOWL_DATA_DIR: dir,
        AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_SHUTDOWN_TIMEOUT: shutdownTimeout,
      },
      cwd: dir,
    });
    const app = await startApp({ config, log, handlers: new Map([["test.slow", handler]]) });
    apps.push(app);
    return { app, dir, lines };
  }

  /** A job handler that reports when it starts and finishes only when the test says so. */
  function heldHandler() {
    const started = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    releases.push(release.resolve);
    const handler = async () => {
      started.resolve();
      await release.promise;
    };
    return { handler, started: started.promise, release: release.resolve };
  }

  /**
   * Whether `p` is still pending after `ms`. Kept as a window: a stop blocked on a job has nothing
   * after it to wait for (every later step waits on the job), so the claim needs time to fail in.
   */
  async function stillPendingAfter(p: Promise<unknown>, ms: number): Promise<boolean> {
    const pending = Symbol("pending");
    return (await Promise.race([p, Bun.sleep(ms).then(() => pending)])) === pending;
  }

  async function jobAfterStop(dir: string, id: string): Promise<Job> {
    const storage = openSqliteStorage({ dir });
    try {
      return (await storage.queue.get(id))!;
    } finally {
      await storage.close();
    }
  }

  test("stop waits for the job in flight, which then finishes done", async () => {
    const held = heldHandler();
    const { app, dir, lines } = await start("5s", held.handler);
    const { id } = await app.storage.queue.enqueue({ kind: "test.slow", payload: {} });
    await held.started;

    const stopping = app.stop();
    // Step 1 of the stop is over: the listener is closed and drained. Step 2 waits for the job.
    await waitUntil("the HTTP listener to stop", () => app.http.server === null);
    expect(await refusesConnections(app.url)).toBe(true);
    expect(await stillPendingAfter(stopping, 200)).toBe(true);
    expect((await app.storage.queue.get(id))?.state).toBe("leased");

    held.release();
    expect(await stopping).toEqual({ forced: false });
    const job = await jobAfterStop(dir, id);
    expect(job.state).toBe("done");
    expect(job.attempt).toBe(1);
    expect(lines.find((l) => l.msg === "stopped")).toMatchObject({ level: "info", forced: false, jobs_cut_off: 0 });
  });

  test("a job that outlives the shutdown timeout is cut off: forced, and the job keeps its lease to be recovered", async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const { app, dir, lines } = await start("300ms", () => {
      started();
      return new Promise<void>(() => {}); // never finishes
    });
    const { id } = await app.storage.queue.enqueue({ kind: "test.slow", payload: {} });
    await running;

    const t0 = performance.now();
    expect(await app.stop()).toEqual({ forced: true });
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(3000);

    const job = await jobAfterStop(dir, id);
    expect(job.state).toBe("leased");
    expect(job.attempt).toBe(1);
    expect(job.leaseExpiresAt).toBeGreaterThan(Date.now());
    expect(lines.find((l) => l.msg === "stopped")).toMatchObject({ level: "warn", forced: true, jobs_cut_off: 1 });
  });
});
