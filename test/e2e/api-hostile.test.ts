import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { killLeftovers, serveAgentowl } from "../helpers/process.ts";
import { loopbackConfig } from "../helpers/app.ts";

/**
 * The /v1 API against hostile requests (guarantee 9, docs/guarantees.md): the token before the
 * body, bounded bodies, bounded nesting, media types, authorization before validation, and
 * cross-tenant conflicts that name nothing of the other tenant.
 */

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-admin-hostile-5d8f4a6c0e7f";
const MiB = 1024 * 1024;
const root = mkdtempSync(join(tmpdir(), "agentowl-api-hostile-"));
let app: App;
let base: string;
const call = apiCaller(() => base, BOOTSTRAP);

interface RawAnswer {
  status: number;
  /** Body bytes written before the answer came (or the socket closed). */
  sent: number;
  text: string;
}

/**
 * A POST over a raw socket: the head, then body bytes as fast as the server takes them, up to
 * `bytes`, never ending a chunked body, until the server answers. What a client that never stops
 * sending looks like; fetch() would not let us stop at the answer.
 */
function rawPost(
  url: string,
  path: string,
  headers: Record<string, string>,
  opts: { bytes: number; chunked?: boolean },
): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let sent = 0;
    let answer = "";
    let done = false;
    const finish = () => {
      if (done) return;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (!m) return;
      const head = answer.indexOf("\r\n\r\n");
      const length = Number(/content-length: *(\d+)/i.exec(answer)?.[1] ?? 0);
      if (head < 0 || answer.length < head + 4 + length) return;
      done = true;
      socket.destroy();
      resolve({ status: Number(m[1]), sent, text: answer.slice(head + 4) });
    };
    socket.on("data", (d) => {
      answer += d.toString("latin1");
      finish();
    });
    socket.on("error", (e) => (done ? undefined : answer ? finish() : reject(e)));
    socket.on("close", () => {
      if (!done) resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), sent, text: answer });
      done = true;
    });
    const head = [
      `POST ${path} HTTP/1.1`,
      `host: ${hostname}:${port}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    head.push(opts.chunked ? "transfer-encoding: chunked" : `content-length: ${opts.bytes}`);
    socket.write(`${head.join("\r\n")}\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 0x7b); // "{{{{…"
    const pump = () => {
      while (!done && sent < opts.bytes) {
        const piece = opts.chunked
          ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")])
          : chunk;
        sent += chunk.length;
        if (!socket.write(piece)) return void socket.once("drain", pump);
      }
    };
    socket.once("connect", pump);
  });
}

async function token(scopes: string[]): Promise<string> {
  const r = await call("POST", "/v1/tokens", { body: { name: scopes.join(","), scopes } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.token;
}

/** The slowest answer of /healthz, asked every few ms while `work` runs. */
async function healthzWorstWhile<T>(work: Promise<T>): Promise<{ result: T; worstMs: number; asked: number }> {
  let finished = false;
  let worstMs = 0;
  let asked = 0;
  const probe = (async () => {
    while (!finished) {
      const t0 = performance.now();
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      worstMs = Math.max(worstMs, performance.now() - t0);
      asked++;
      // The subject: a probe's pace (a health check every few ms), not a wait for something.
      await Bun.sleep(5);
    }
  })();
  const result = await work.finally(() => (finished = true));
  await probe;
  return { result, worstMs, asked };
}

const TELNYX = (name: string, number: string) => ({
  name,
  type: "telnyx",
  numbers: [number],
  verify: { scheme: "telnyx-ed25519", public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" },
});

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP);
  app = await startApp({ config, log: createLogger({ level: "error", redactor: new Redactor(), sink: () => {} }) });
  base = app.url;
  for (const name of ["alpha", "beta"])
    expect((await call("POST", "/v1/tenants", { body: { name } })).status).toBe(201);
  expect((await call("POST", "/v1/tenants/beta/bindings", { body: TELNYX("sms", "+15557654321") })).status).toBe(201);
});

afterEach(killLeftovers);

afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("the token is checked before the body is read", () => {
  test("an unauthenticated POST declaring 120 MiB is answered 401 while its body is still coming", async () => {
    for (const chunked of [false, true]) {
      const r = await rawPost(
        base,
        "/v1/tenants/alpha/endpoints",
        { "content-type": "application/json" },
        { bytes: 120 * MiB, chunked },
      );
      expect(r.status, `chunked: ${chunked}`).toBe(401);
      expect(r.sent, `chunked: ${chunked}`).toBeLessThan(16 * MiB);
    }
  });

  test("'{' without a token is 401, not 400; with a bad token too", async () => {
    for (const t of [null, "aow_not-a-real-token"]) {
      const r = await call("POST", "/v1/tenants/alpha/endpoints", { token: t, raw: "{" });
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toContain("Bearer");
    }
  });

  test("20 unauthenticated 120 MiB POSTs at once leave the server's memory where it was", async () => {
    const dir = mkdtempSync(join(root, "rss-"));
    const { server, url } = await serveAgentowl({ cwd: dir, dataDir: join(dir, "data"), token: BOOTSTRAP });
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]) * 1024;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const before = rss();
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        rawPost(url, "/v1/config/apply", { "content-type": "application/yaml" }, { bytes: 120 * MiB }),
      ),
    );
    const after = rss();
    console.log(
      `RSS ${(before / MiB).toFixed(0)} MiB before, ${(after / MiB).toFixed(0)} MiB after 20 ` +
        `unauthenticated 120 MiB ` +
        `POSTs; ${(answers.reduce((n, a) => n + a.sent, 0) / MiB).toFixed(1)} MiB written by the clients in all`,
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(401));
    expect(after - before).toBeLessThan(64 * MiB);
  });
});

describe("bodies are bounded per route while they are read", () => {
  test("an oversize config/apply is 413 before a byte of it is read, and a chunked one that never ends is cut at the limit", async () => {
    const auth = { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/yaml" };
    const declared = await rawPost(base, "/v1/config/apply", auth, { bytes: 100 * MiB });
    expect(declared.status).toBe(413);
    expect(declared.sent).toBeLessThan(16 * MiB);
    const chunked = await rawPost(base, "/v1/config/apply", auth, { bytes: 100 * MiB, chunked: true });
    expect(chunked.status).toBe(413);
    expect(chunked.sent).toBeGreaterThanOrEqual(1 * MiB);
    expect(chunked.sent).toBeLessThan(16 * MiB);
    expect(JSON.parse(chunked.text)).toMatchObject({ status: 413, detail: expect.stringContaining(`${MiB} bytes`) });
  });

  test("a JSON resource over 64 KiB is 413; a template may be larger", async () => {
    const big = await call("POST", "/v1/tenants/alpha/endpoints", {
      body: { name: "big", url: `http://10.0.0.5/${"x".repeat(70 * 1024)}` },
    });
    expect(big.status).toBe(413);
    expect(big.headers.get("content-type")).toBe("application/problem+json");
    const template = await call("POST", "/v1/tenants/alpha/templates", {
      body: {
        name: "long",
        instructions: "Be brief. ".repeat(9000),
        model: { endpoint: "http://10.0.0.9/v1", default: "m" },
      },
    });
    expect(template.status).toBe(201);
  });
});

describe("only the documented media types", () => {
  test("a form-encoded body where JSON is required is 415, and nothing happens", async () => {
    const form = { "content-type": "application/x-www-form-urlencoded" };
    const endpoint = await call("POST", "/v1/tenants/alpha/endpoints", {
      raw: "name=form&url=http%3A%2F%2F10.0.0.5%2F",
      headers: form,
    });
    expect(endpoint.status).toBe(415);
    expect(endpoint.headers.get("content-type")).toBe("application/problem+json");
    expect((await call("GET", "/v1/tenants/alpha/endpoints/form")).status).toBe(404);

    const parked = await app.storage.approvals.park({
      tenant: "alpha",
      action: { kind: "dispatch", target: "crm" },
      policy: { name: "guard", version: 1, rule: 0 },
      expiresInMs: 86_400_000,
      onExpiry: "deny",
    });
    for (const [type, raw] of [
      ["application/x-www-form-urlencoded", "reason=nope"],
      ["text/plain", '{"reason":"nope"}'],
      ["multipart/form-data; boundary=x", "--x--"],
    ]) {
      expect(
        (await call("POST", `/v1/approvals/${parked.id}/deny`, { raw, headers: { "content-type": type! } })).status,
        type,
      ).toBe(415);
    }
    expect((await call("GET", `/v1/approvals/${parked.id}`)).body.state).toBe("pending");
    // A JSON media type with a suffix, as a merge patch may be sent, is JSON.
    const patch = await call("PATCH", "/v1/tenants/alpha", {
      raw: '{"display_name":"Alpha"}',
      headers: { "content-type": "application/merge-patch+json" },
    });
    expect(patch.status).toBe(200);
  });

  test("the desired-state routes take YAML only", async () => {
    const yaml = "apiVersion: agentowl/v1\ntenants: []\n";
    for (const type of ["application/yaml", "application/x-yaml", "text/yaml", "text/plain; charset=utf-8"]) {
      expect(
        (await call("POST", "/v1/config/validate", { raw: yaml, headers: { "content-type": type } })).status,
        type,
      ).toBe(200);
    }
    for (const type of ["application/json", "application/x-www-form-urlencoded", "application/yaml; charset=latin1"]) {
      expect(
        (await call("POST", "/v1/config/validate", { raw: yaml, headers: { "content-type": type } })).status,
        type,
      ).toBe(415);
    }
  });
});

describe("authorization before validation", () => {
  test("a tenant token's POST /v1/tokens and /v1/tenants are 403 whatever the body", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    for (const raw of ["{}", '{"name": 12, "scopes": "root"}', "{", '{"name":"x","scopes":["admin"]}']) {
      expect((await call("POST", "/v1/tokens", { token: alphaWrite, raw })).status, raw).toBe(403);
      expect((await call("POST", "/v1/tenants", { token: alphaWrite, raw })).status, raw).toBe(403);
    }
  });

  test("a read token's config/apply is 403 before its file is looked at", async () => {
    const alphaRead = await token(["tenant:alpha:read"]);
    for (const raw of ["apiVersion: agentowl/v1\ntenants:\n  - name: alpha\n", "{{{ not yaml"]) {
      expect(
        (
          await call("POST", "/v1/config/apply", {
            token: alphaRead,
            raw,
            headers: { "content-type": "application/yaml" },
          })
        ).status,
      ).toBe(403);
    }
  });
});

describe("nesting is bounded before any recursive work, and the event loop stays free", () => {
  test("a `when` nested 10,000 deep is a 422 in milliseconds, and 100,000 deep a 413; never a 500", async () => {
    const nested = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    const raw = `{"name":"deep","rules":[{"when":${nested(10_000)},"effect":"deny"}]}`;
    const { result, worstMs } = await healthzWorstWhile(call("POST", "/v1/tenants/alpha/policies", { raw }));
    expect(result.status).toBe(422);
    expect(result.body.errors[0].message).toContain("nested more than 64 levels");
    expect(worstMs).toBeLessThan(250);
    expect(
      (await call("POST", "/v1/tenants/alpha/policies", { raw: raw.replace(nested(10_000), nested(100_000)) })).status,
    ).toBe(413);
    // The same on the policy test's free-form draft.
    expect(
      (await call("POST", "/v1/tenants/alpha/policy-test", { raw: `{"event":"evt_x","policy":${nested(10_000)}}` }))
        .status,
    ).toBe(422);
    expect((await call("GET", "/v1/tenants/alpha/policies/deep")).status).toBe(404);
  });

  test("a 10 KiB YAML file nested 5,000 deep, from a read token, is a 422 at its line, quickly", async () => {
    const alphaRead = await token(["tenant:alpha:read"]);
    for (const deep of [`${"- ".repeat(5000)}x\n`, `x: ${"[".repeat(5000)}${"]".repeat(5000)}\n`]) {
      const t0 = performance.now();
      const r = await call("POST", "/v1/config/validate?file=deep.yaml", {
        token: alphaRead,
        raw: `apiVersion: agentowl/v1\ntenants: []\n${deep}`,
        headers: { "content-type": "application/yaml" },
      });
      expect(r.status).toBe(422);
      expect(r.body.errors[0]).toMatchObject({
        field: expect.stringMatching(/^deep\.yaml:3:\d+$/),
        message: expect.stringContaining("nested more than 64 levels"),
      });
      expect(performance.now() - t0).toBeLessThan(1000);
    }
  });

  test("billion laughs is a 422, not an expansion", async () => {
    const lines = ["apiVersion: agentowl/v1", "tenants: []", `l0: &l0 [${Array(10).fill('"lol"').join(",")}]`];
    for (let i = 1; i <= 9; i++)
      lines.push(
        `l${i}: &l${i} [${Array(10)
          .fill(`*l${i - 1}`)
          .join(",")}]`,
      );
    const r = await call("POST", "/v1/config/diff", {
      raw: lines.join("\n"),
      headers: { "content-type": "application/yaml" },
    });
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body.errors)).toContain("aliases expand too much");
  });

  test("a file that is slow to parse is parsed off the event loop: /healthz answers quickly throughout", async () => {
    // Within every bound the pre-count checks, yet seconds of work for the yaml library (its
    // duplicate-key check is quadratic in a mapping's keys).
    const slow = `apiVersion: agentowl/v1\ntenants: []\nx:\n${Array.from({ length: 10_000 }, (_, i) => `  k${i}: 1`).join("\n")}\n`;
    const t0 = performance.now();
    const { result, worstMs, asked } = await healthzWorstWhile(
      call("POST", "/v1/config/validate", { raw: slow, headers: { "content-type": "application/yaml" } }),
    );
    console.log(
      `a ${(slow.length / 1024).toFixed(0)} KiB file took ${(performance.now() - t0).toFixed(0)} ` +
        `ms to refuse; /healthz asked ${asked} times meanwhile, slowest answer ${worstMs.toFixed(1)} ms`,
    );
    expect(result.status).toBe(422);
    expect(asked).toBeGreaterThan(10);
    expect(worstMs).toBeLessThan(250);
  });
});

describe("a conflict with another tenant names nothing of it, and is audited", () => {
  test("POST …/bindings with another tenant's number: 422 without its name, binding or owner; the audit entry has them", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    const r = await call("POST", "/v1/tenants/alpha/bindings", {
      token: alphaWrite,
      body: TELNYX("phone", "+15557654321"),
    });
    expect(r.status).toBe(422);
    expect(r.body.errors).toEqual([
      { field: "alpha/bindings/phone/numbers/0", message: expect.stringContaining("already in use by another tenant") },
    ]);
    expect(r.text).not.toMatch(/beta|sms/);
    expect((await call("GET", "/v1/tenants/alpha/bindings/phone")).status).toBe(404);

    const audit = await call("GET", "/v1/audit?action=resource.conflict");
    expect(audit.body.items[0]).toMatchObject({
      tenant: null,
      decision: "deny",
      target: "alpha/bindings/phone",
      details: {
        request: "api",
        value: "+15557654321",
        tenant: "alpha",
        other_tenant: "beta",
        other_resource: "beta/bindings/sms",
      },
    });
    // The tenant's own view of the audit log does not include it.
    expect(JSON.stringify((await call("GET", "/v1/audit?limit=500", { token: alphaWrite })).body)).not.toContain(
      "resource.conflict",
    );
  });

  test("config/diff and config/apply of a file claiming another tenant's number: the same, audited per request", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    const file =
      `apiVersion: agentowl/v1\ntenants:\n  - name: alpha\n    bindings:\n` +
      `      - { name: sms, type: telnyx, numbers: ["+15557654321"], verify: { scheme: ` +
      `telnyx-ed25519, public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" } }\n`;
    for (const mode of ["diff", "apply"]) {
      const r = await call("POST", `/v1/config/${mode}`, {
        token: alphaWrite,
        raw: file,
        headers: { "content-type": "application/yaml" },
      });
      expect(r.status, mode).toBe(422);
      expect(r.body.errors).toEqual([
        { field: "alpha/bindings/sms/numbers/0", message: expect.stringContaining("another tenant") },
      ]);
      expect(r.text).not.toContain("beta");
      const entry = (await call("GET", "/v1/audit?action=resource.conflict")).body.items[0];
      expect(entry.details).toMatchObject({
        request: `config.${mode}`,
        other_tenant: "beta",
        other_resource: "beta/bindings/sms",
      });
    }
  });
});

describe("secret names follow the resource-name rules", () => {
  test("`crm-`, `crm.`, `CRM` and a 10,000-character name are 422 naming the rule; `crm-signing` is set", async () => {
    for (const bad of ["crm-", "crm.", "CRM", "a".repeat(10_000)]) {
      const r = await call("PUT", `/v1/tenants/alpha/secrets/${bad}`, { body: { value: "s3cret-value-long-enough" } });
      expect(r.status, bad.slice(0, 20)).toBe(422);
      expect(r.body.errors[0]).toEqual({
        field: "/name",
        message: expect.stringContaining("lower-case letters, digits and dashes"),
      });
    }
    expect((await call("GET", "/v1/tenants/alpha/secrets")).body.items).toEqual([]);
    expect(
      (await call("PUT", "/v1/tenants/alpha/secrets/crm-signing", { body: { value: "s3cret-value-long-enough" } }))
        .status,
    ).toBe(201);
  });
});
