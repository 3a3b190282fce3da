/**
 * `agentowl events ls|show`, `deliveries ls` and `logs tail` as real processes against an
 * appliance started in this process: lists, filters, following new events until Ctrl-C, and the
 * live log stream over Server-Sent Events, reconnecting when it drops.
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { type App, startApp } from "../../src/app/app.ts";
import { newId } from "../../src/core/ids.ts";
import { createLogger, LogTap, Redactor } from "../../src/core/log.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { storeEvent as storeEventIn, testEnvelope } from "../helpers/events.ts";
import { killLeftovers, type RunResult, runAgentowl, startAgentowl, waitUntil } from "../helpers/process.ts";
import { sqliteOf } from "../helpers/storage.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-cli-events-9b3d5f7a1c2e4d6f";
const root = mkdtempSync(join(tmpdir(), "agentowl-cli-events-"));
const work = join(root, "work");
const logTap = new LogTap();
let app: App;

const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  HOME: work,
  XDG_CONFIG_HOME: "",
  AGENTOWL_URL: app.url,
  AGENTOWL_TOKEN: BOOTSTRAP,
  ...extra,
});
const agentowl = (args: string[], extra?: Record<string, string>): Promise<RunResult> =>
  runAgentowl(args, { cwd: work, env: env(extra) });
const follow = (args: string[], extra?: Record<string, string>) => startAgentowl(args, { cwd: work, env: env(extra) });

function ok(r: RunResult): string {
  expect(r.code, `stderr:\n${r.stderr}`).toBe(0);
  return r.stdout;
}

let second = 0;
const envelope = (tenant: string, over: Partial<Envelope> = {}): Envelope =>
  testEnvelope(tenant, ++second, { idempotency_key: `delivery-${second}`, ...over });
const storeEvent = (e: Envelope, withDelivery = false): Promise<string> => storeEventIn(sqliteOf(app), e, withDelivery);

beforeAll(async () => {
  mkdirSync(work);
  const config = loopbackConfig(root, BOOTSTRAP);
  const log = createLogger({ level: "debug", redactor: new Redactor(), sink: (line) => logTap.publish(line) });
  app = await startApp({ config, log, logTap });
  for (const name of ["alpha", "busy"]) {
    const res = await fetch(`${app.url}/v1/tenants`, {
      method: "POST",
      headers: { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    expect(res.status).toBe(201);
  }
});

afterEach(killLeftovers);

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("events ls", () => {
  test("newest first as a table, filtered by tenant and type; --json parses", async () => {
    const older = await storeEvent(envelope("alpha", { data: { subject: "hello there" } }));
    const newer = await storeEvent(envelope("alpha", { type: "sms.received", channel: "sms" }));
    const lines = ok(await agentowl(["events", "ls", "-t", "alpha"]))
      .trimEnd()
      .split("\n");
    expect(lines[0]).toMatch(/^ID\s+RECEIVED\s+TYPE\s+TENANT\s+AGENT\s+CHANNEL\s+SUMMARY$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([newer, older]);
    expect(lines[2]).toContain("hello there");

    const sms = JSON.parse(ok(await agentowl(["events", "ls", "-t", "alpha", "--type", "sms.received", "--json"])));
    expect(sms.map((e: Envelope) => e.id)).toEqual([newer]);
  });

  test("--limit takes the newest N; --all walks every page", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 130; i++) ids.push(await storeEvent(envelope("busy")));
    expect(
      JSON.parse(ok(await agentowl(["events", "ls", "-t", "busy", "--limit", "5", "--json"]))).map(
        (e: Envelope) => e.id,
      ),
    ).toEqual(ids.slice(-5).reverse());
    const all = JSON.parse(ok(await agentowl(["events", "ls", "-t", "busy", "--all", "--json"])));
    expect(all.map((e: Envelope) => e.id)).toEqual([...ids].reverse());
  });

  test("--since and --until take ISO times; anything else is a usage error", async () => {
    const at = envelope("alpha");
    const id = await storeEvent(at);
    const window = JSON.parse(
      ok(
        await agentowl(["events", "ls", "-t", "alpha", "--since", at.received_at, "--until", at.received_at, "--json"]),
      ),
    );
    expect(window.map((e: Envelope) => e.id)).toEqual([id]);
    const r = await agentowl(["events", "ls", "--since", "yesterday"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--since takes an ISO 8601 time");
  });

  test("--follow prints the latest events oldest first, then each new one, until Ctrl-C (exit 0)", async () => {
    await storeEvent(envelope("alpha"));
    const latest = await storeEvent(envelope("alpha"));
    const running = follow(["events", "ls", "-t", "alpha", "--follow", "--limit", "2"]);
    const rows = () => running.lines.filter((l) => l.startsWith("evt_")).map((l) => l.split(/\s+/)[0]!);
    await running.waitFor("the latest events", () => rows().length === 2);
    expect(rows()[1]).toBe(latest);

    const fresh = await storeEvent(envelope("alpha", { data: { subject: "just now" } }));
    await storeEvent(envelope("busy")); // another tenant: not followed
    await running.waitFor("the new event", () => rows().includes(fresh));
    expect(running.lines.find((l) => l.startsWith(fresh))).toContain("just now");
    running.proc.kill("SIGINT");
    expect(await running.exit(5000)).toBe(0);
    expect(rows()).toHaveLength(3);
  });

  test("--follow --json prints one event per line", async () => {
    const running = follow(["events", "ls", "-t", "alpha", "--follow", "--json", "--limit", "1"]);
    await running.waitFor("the latest event", () => running.lines.length >= 1);
    const fresh = await storeEvent(envelope("alpha"));
    await running.waitFor("the new event", () => running.lines.some((l) => l.includes(fresh)));
    running.proc.kill("SIGINT");
    expect(await running.exit(5000)).toBe(0);
    expect(
      running.lines
        .filter((l) => l)
        .map((l) => JSON.parse(l).id)
        .at(-1),
    ).toBe(fresh);
  });
});

describe("events show and deliveries ls", () => {
  test("an event shows its envelope, its deliveries and its trace", async () => {
    const id = await storeEvent(envelope("alpha", { data: { subject: "refund" } }), true);
    const out = ok(await agentowl(["events", "show", id]));
    const [yaml, rest] = out.split("\nDELIVERIES\n");
    expect(YAML.parse(yaml!)).toMatchObject({
      id,
      tenant: "alpha",
      type: "webhook.received",
      data: { subject: "refund" },
    });
    expect(rest).toMatch(
      new RegExp(
        `^ID\\s+EVENT\\s+TENANT\\s+TARGET\\s+STATE\\s+ATTEMPTS\\s+LAST\\s+UPDATED\\ndlv_\\w+\\s+${id}\\s+alpha\\s+crm\\s+delivered\\s+1\\s+200\\s`,
      ),
    );
    expect(rest).toMatch(/\nTRACE\nSTEP\s+START\s+DURATION\s+OUTCOME\ningress\s+\S+\s+3 ms\s+ok\n$/);

    const json = JSON.parse(ok(await agentowl(["events", "show", id, "--json"])));
    expect(json).toMatchObject({
      id,
      deliveries: [{ event_id: id, endpoint: "crm", state: "delivered" }],
      trace: [{ name: "ingress" }],
    });

    const deliveries = JSON.parse(ok(await agentowl(["deliveries", "ls", "--event", id, "--json"])));
    expect(deliveries).toMatchObject([{ event_id: id, tenant: "alpha", state: "delivered" }]);
    expect(ok(await agentowl(["deliveries", "ls", "-t", "alpha", "--state", "delivered"]))).toContain(id);
    expect(ok(await agentowl(["deliveries", "ls", "-t", "alpha", "--state", "dead"]))).toBe("no deliveries\n");
  });

  test("an unknown event is exit 3", async () => {
    const r = await agentowl(["events", "show", newId("evt")]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^agentowl events show: event evt_\w+ not found\n$/);
  });
});

describe("logs tail", () => {
  // A line published before this test's tail subscribes would be lost: start from none connected.
  const connected = async () => {
    await waitUntil("the tail to connect", () => logTap.subscribers === 1);
  };
  afterEach(async () => {
    await killLeftovers();
    await waitUntil("every tail to be gone", () => logTap.subscribers === 0);
  });

  test("prints live log lines for people, filtered by --level, until Ctrl-C (exit 0)", async () => {
    const running = follow(["logs", "tail", "--level", "info"]);
    await connected();
    logTap.publish(JSON.stringify({ time: "2026-11-21T14:02:11.043Z", level: "debug", msg: "too quiet" }));
    logTap.publish(
      JSON.stringify({
        time: "2026-11-21T14:02:11.044Z",
        level: "warn",
        msg: "disk almost full",
        free_mb: 12,
        path: "/var/lib/agentowl",
      }),
    );
    await running.waitFor("the warning", () => running.lines.find((l) => l.includes("disk almost full")));
    running.proc.kill("SIGINT");
    expect(await running.exit(5000)).toBe(0);
    expect(running.lines.filter((l) => l)).toEqual([
      "2026-11-21T14:02:11.044Z warn  disk almost full free_mb=12 path=/var/lib/agentowl",
    ]);
  });

  test("--json prints the server's lines as they are", async () => {
    const running = follow(["logs", "tail", "--json"]);
    await connected();
    const line = JSON.stringify({ time: "t", level: "info", msg: "as is" });
    logTap.publish(line);
    await running.waitFor("the line", () => running.lines.includes(line));
    running.proc.kill("SIGINT");
    expect(await running.exit(5000)).toBe(0);
  });

  test("is for admins: a tenant token gets exit 5", async () => {
    const res = await fetch(`${app.url}/v1/tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "reader", scopes: ["tenant:alpha:read"] }),
    });
    const { token } = (await res.json()) as { token: string };
    const r = await agentowl(["logs", "tail"], { AGENTOWL_TOKEN: token });
    expect(r.code).toBe(5);
    expect(r.stderr).toBe("agentowl logs tail: this needs an admin token\n");
  });

  test("a dropped stream is reconnected, resuming after the last event id", async () => {
    // A stand-in server: the first connection sends one line and drops; the second must ask
    // to resume after it, and gets the next.
    const asked: (string | null)[] = [];
    const encoder = new TextEncoder();
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req) {
        asked.push(req.headers.get("last-event-id"));
        const text =
          asked.length === 1
            ? 'id: 1\ndata: {"level":"info","msg":"first"}\n\n'
            : 'id: 2\ndata: {"level":"info","msg":"second"}\n\n';
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(encoder.encode(text));
            if (asked.length === 1) c.close();
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      },
    });
    try {
      const running = follow(["logs", "tail"], { AGENTOWL_URL: `http://127.0.0.1:${server.port}` });
      await running.waitFor("the line after the reconnect", () => running.lines.some((l) => l.includes("second")));
      running.proc.kill("SIGINT");
      expect(await running.exit(5000)).toBe(0);
      expect(asked.slice(0, 2)).toEqual([null, "1"]);
      expect(running.lines.filter((l) => l)).toEqual(["- info  first", "- info  second"]);
      expect(running.stderr).toContain("the server closed the stream; reconnecting in 0.5 s");
      expect(running.stderr).toContain("reconnected");
    } finally {
      await server.stop(true);
    }
  });
});

describe("agentowl policy test", () => {
  test("prints each target's decision, with a draft policy from a file", async () => {
    const draftFile = join(work, "draft-policy.yaml");
    await Bun.write(
      draftFile,
      "name: guard\nrules:\n  - when: { target: crm }\n    effect: require_approval\n    reason: check first\n",
    );
    const eventId = await storeEvent(envelope("beta", { type: "email.received", channel: "email" }));
    const plain = await agentowl(["policy", "test", "-t", "beta", "--event", eventId, "--json"]);
    expect(plain.code, plain.stderr).toBe(0);
    const withDraft = await agentowl([
      "policy",
      "test",
      "-t",
      "beta",
      "--event",
      eventId,
      "--policy",
      draftFile,
      "--target",
      "crm",
    ]);
    expect(withDraft.code, withDraft.stderr).toBe(0);
    expect(withDraft.stdout).toContain("guard@draft");
    expect(withDraft.stdout).toMatch(/crm\s+require_approval\s+guard@draft\s+#1\s+check first/);
    expect((await agentowl(["policy", "test", "-t", "beta", "--event", "evt_01M80MPAZ9E8MRS0YPNR25EEF9"])).code).toBe(
      3,
    );
    expect((await agentowl(["policy", "test", "-t", "beta"])).code).toBe(2);
  });

  test("takes the event id as its argument and finds the tenant from the event", async () => {
    const eventId = await storeEvent(envelope("beta", { type: "email.received", channel: "email" }));
    const r = await agentowl(["policy", "test", eventId, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).event).toBe(eventId);
    const unknown = await agentowl(["policy", "test", "evt_01M80MPAZ9E8MRS0YPNR25EEF9"]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  test("global policies: managed with --global, listed and versioned, and deciding in policy test", async () => {
    const file = join(work, "house-rules.yaml");
    await Bun.write(
      file,
      "name: house-rules\nrules:\n  - when: { data.subject: { contains: invoice } }\n    effect: quarantine\n    reason: invoices are checked\n",
    );
    expect(ok(await agentowl(["policies", "create", "--global", "-f", file]))).toBe(
      "created global policy house-rules (resource_version 1)\n",
    );
    expect(ok(await agentowl(["policies", "ls", "--global"]))).toMatch(/house-rules\s+1\s+-?\s*1/);
    // A copy saved by `get` names itself global: `update -f` needs no flag.
    const saved = join(work, "house-rules.saved.yaml");
    await Bun.write(
      saved,
      ok(await agentowl(["policies", "get", "--global", "house-rules"])).replace("effect: quarantine", "effect: deny"),
    );
    expect(ok(await agentowl(["policies", "update", "-f", saved]))).toBe(
      "updated global policy house-rules (resource_version 1 → 2)\n",
    );
    expect(ok(await agentowl(["policies", "versions", "--global", "house-rules"]))).toMatch(
      /1\s+create[\s\S]*2\s+update/,
    );

    const eventId = await storeEvent(
      envelope("beta", { type: "email.received", channel: "email", data: { subject: "your invoice" } }),
    );
    expect(ok(await agentowl(["policy", "test", "-t", "beta", "--event", eventId, "--target", "crm"]))).toMatch(
      /crm\s+deny\s+global:house-rules@2\s+#1\s+invoices are checked/,
    );
    expect((await agentowl(["policies", "ls", "--global", "-t", "beta"])).code).toBe(2);
    expect(ok(await agentowl(["policies", "delete", "--global", "house-rules"]))).toBe(
      "deleted global policy house-rules\n",
    );
    expect(ok(await agentowl(["policies", "ls", "--global"]))).toBe("no global policies\n");
  });
});
