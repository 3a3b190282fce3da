/**
 * HTTPS on the HTTP listener and the CLI's certificate pin (docs/api.md), as the operator meets
 * them: `agentowl init` prints the fingerprint, `agentowl serve` (http_tls = on, on 127.0.0.1)
 * serves that certificate and logs it, `agentowl login` pins it, and a server that presents
 * another certificate is refused before the token leaves. The plain listener's rule for clients
 * that are not loopback runs in a network namespace of its own (`unshare -n`, as root).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { peerCertificate } from "../../src/cli/pin.ts";
import { fingerprintOf } from "../../src/server/tls.ts";
import {
  agentowlArgv,
  agentowlEnv,
  killLeftovers,
  type Running,
  type RunResult,
  runAgentowl,
  serveAgentowl,
} from "../helpers/process.ts";

setDefaultTimeout(60_000);

const TOKEN = "bootstrap-https-5d1f8b3a7e2c9d4f6a0b";
const root = mkdtempSync(join(tmpdir(), "agentowl-https-"));
afterAll(async () => {
  await killLeftovers();
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
/** A fresh temp HOME (no profile) and working dir (no ./data) for a CLI run. */
function place(): { home: string; work: string } {
  const home = join(root, `home-${++n}`);
  const work = join(root, `work-${n}`);
  mkdirSync(home);
  mkdirSync(work);
  return { home, work };
}

/** `agentowl <args>` with no AGENTOWL_* but `env`, a temp HOME and cwd. */
const cli = (
  args: string[],
  at: { home: string; work: string },
  env: Record<string, string> = {},
  stdin?: string,
): Promise<RunResult> =>
  runAgentowl(args, { cwd: at.work, env: { HOME: at.home, XDG_CONFIG_HOME: "", ...env }, stdin });

/** A failure is one line on stderr and the exit code, never a stack trace. */
function oneLine(r: RunResult, code: number): string {
  expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(code);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
}

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** GET /v1/tenants answers counted by the server, read over its own (unpinned) HTTPS. */
async function tenantListings(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { tls: { rejectUnauthorized: false } })).text();
  return text
    .split("\n")
    .filter(
      (l) =>
        l.startsWith("agentowl_http_requests_total{") &&
        l.includes('route="/v1/tenants"') &&
        l.includes('method="GET"'),
    )
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

describe("HTTPS on the HTTP listener", () => {
  test(`init prints the fingerprint; serve (http_tls = on) presents that certificate and logs the same \
fingerprint; plain HTTP gets no answer there`, async () => {
    const dataDir = join(root, "data-init");
    const init = await cli(["init"], place(), { AGENTOWL_DATA_DIR: dataDir });
    expect(init.code, init.stderr).toBe(0);
    const printed = /HTTPS certificate fingerprint[^\n]*\n\n {2}(sha256:[0-9A-F:]+)\n/.exec(init.stdout)?.[1];
    const file = fingerprintOf(readFileSync(join(dataDir, "tls", "cert.pem"), "utf8"));
    expect(printed).toBe(file);

    const { server, url } = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: { AGENTOWL_HTTP_TLS: "on" } });
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect((await server.waitForLog("agentowl serving")).fingerprint).toBe(file);
    expect((await peerCertificate(url)).fingerprint).toBe(file);
    // Trusting exactly that certificate, the API answers over TLS.
    const pem = readFileSync(join(dataDir, "tls", "cert.pem"), "utf8");
    const health = await fetch(`${url}/healthz`, { tls: { ca: [pem], checkServerIdentity: () => undefined } });
    expect(health.status).toBe(200);
    await expect(fetch(url.replace("https:", "http:") + "/healthz")).rejects.toThrow();
  });

  test("by default (auto, on every address) it serves HTTPS; off there is plain HTTP with a warning in the log", async () => {
    const { url } = await serveAgentowl({
      cwd: root,
      dataDir: join(root, "data-default"),
      token: TOKEN,
      env: { AGENTOWL_HTTP_LISTEN: "0.0.0.0:0" },
    });
    expect(url).toMatch(/^https:\/\/0\.0\.0\.0:\d+$/);
    const local = url.replace("0.0.0.0", "127.0.0.1");
    expect((await peerCertificate(local)).fingerprint).toBe(
      fingerprintOf(readFileSync(join(root, "data-default", "tls", "cert.pem"), "utf8")),
    );

    const { server, url: plain } = await serveAgentowl({
      cwd: root,
      dataDir: join(root, "data-off"),
      token: TOKEN,
      env: { AGENTOWL_HTTP_LISTEN: "0.0.0.0:0", AGENTOWL_HTTP_TLS: "off" },
    });
    expect(plain).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    const warning = await server.waitForLog(
      "plain HTTP on a non-loopback address (http_tls = off): API tokens travel in clear",
    );
    expect(warning.level).toBe("warn");
    expect((await fetch(`${plain.replace("0.0.0.0", "127.0.0.1")}/healthz`)).status).toBe(200);
  });

  test("a plain listener whose port is taken stops the start with one line naming http_plain_listen", async () => {
    const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const r = await runAgentowl(["serve"], {
        cwd: root,
        env: {
          AGENTOWL_DATA_DIR: join(root, "data-busy"),
          AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
          AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
          AGENTOWL_HTTP_PLAIN_LISTEN: `127.0.0.1:${busy.port}`,
        },
      });
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split("\n")).toEqual([
        `agentowl serve: cannot listen on 127.0.0.1:${busy.port}: EADDRINUSE`,
      ]);
    } finally {
      busy.stop(true);
    }
  });

  test("on loopback, auto stays plain HTTP (the tests, the benches, a reverse proxy in front)", async () => {
    const { url } = await serveAgentowl({
      cwd: root,
      dataDir: join(root, "data-auto"),
      token: TOKEN,
      env: { AGENTOWL_HTTP_TLS: "auto" },
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});

describe("the CLI pins the server's certificate", () => {
  const dataDir = join(root, "data-pin");
  const port = freePort();
  const listen = `127.0.0.1:${port}`;
  const url = `https://${listen}`;
  const serve = () =>
    serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: { AGENTOWL_HTTP_TLS: "on", AGENTOWL_HTTP_LISTEN: listen } });
  const at = place();
  const noEnv = {};
  let server: Running;
  beforeAll(async () => {
    ({ server } = await serve());
  });

  test(`login shows the fingerprint and, without a terminal, wants it confirmed: a wrong --fingerprint is \
refused (exit 5), none asks for one (exit 2); nothing is saved`, async () => {
    const fp = (await peerCertificate(url)).fingerprint;
    const wrong = `sha256:${"AB:".repeat(31)}AB`;
    const refused = oneLine(await cli(["login", "--url", url, "--fingerprint", wrong], at, noEnv, TOKEN), 5);
    expect(refused).toBe(
      `agentowl login: ${url} presents certificate ${fp}, not the expected ${wrong}: nothing sent, nothing saved`,
    );
    const unasked = oneLine(await cli(["login", "--url", url], at, noEnv, TOKEN), 2);
    expect(unasked).toContain(`presents certificate ${fp}`);
    expect(unasked).toContain(`--fingerprint ${fp}`);
    expect(existsSync(join(at.home, ".config", "agentowl", "profile.toml"))).toBe(false);
  });

  test(`login with the right fingerprint pins it in the profile; later commands connect with it, and without \
it an https:// server is not trusted`, async () => {
    const fp = (await peerCertificate(url)).fingerprint;
    const login = await cli(["login", "--url", url, "--fingerprint", fp.toLowerCase()], at, noEnv, TOKEN);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain(`certificate ${fp} pinned`);
    const profile = readFileSync(join(at.home, ".config", "agentowl", "profile.toml"), "utf8");
    expect(profile).toContain(`fingerprint = "${fp}"`);
    expect(profile).toContain("BEGIN CERTIFICATE");

    const ls = await cli(["tenants", "ls", "--json"], at);
    expect(ls.code, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout)).toEqual([]);

    // No profile, no pin: the system's CAs decide, and a self-signed certificate is not theirs.
    const elsewhere = place();
    const untrusted = oneLine(await cli(["tenants", "ls"], elsewhere, { AGENTOWL_URL: url, AGENTOWL_TOKEN: TOKEN }), 5);
    expect(untrusted).toContain(`${url} presents a certificate this machine does not trust`);
    expect(untrusted).toContain(`agentowl login --url ${url}`);
    // --fingerprint alone (scripts): the certificate is read, checked, then pinned for the request.
    const pinned = await cli(["tenants", "ls", "--json", "--fingerprint", fp], elsewhere, {
      AGENTOWL_URL: url,
      AGENTOWL_TOKEN: TOKEN,
    });
    expect(pinned.code, pinned.stderr).toBe(0);
    const wrong = oneLine(
      await cli(["tenants", "ls"], elsewhere, {
        AGENTOWL_URL: url,
        AGENTOWL_TOKEN: TOKEN,
        AGENTOWL_FINGERPRINT: `sha256:${"00".repeat(32)}`,
      }),
      5,
    );
    expect(wrong).toContain(`presents certificate ${fp}, not the pinned sha256:00:00`);
  });

  test("on this box, with the data dir readable, the CLI needs no URL: it reads the settings and pins the certificate file", async () => {
    const local = place();
    const r = await cli(["tenants", "ls", "--json"], local, {
      AGENTOWL_DATA_DIR: dataDir,
      AGENTOWL_HTTP_LISTEN: listen,
      AGENTOWL_HTTP_TLS: "on",
      AGENTOWL_TOKEN: TOKEN,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });

  test("a replaced certificate is refused with one line and nothing sent; logging in again pins the new one", async () => {
    server.proc.kill("SIGTERM");
    expect(await server.exit(15_000)).toBe(0);
    const before = fingerprintOf(readFileSync(join(dataDir, "tls", "cert.pem"), "utf8"));
    // The operator (or someone in the middle) now presents another certificate on the same address.
    rmSync(join(dataDir, "tls"), { recursive: true });
    ({ server } = await serve());
    const after = String((await server.waitForLog("agentowl serving")).fingerprint);
    expect(after).not.toBe(before);
    const listed = await tenantListings(url);

    const refused = oneLine(await cli(["tenants", "ls"], at), 5);
    expect(refused).toBe(
      `agentowl tenants ls: ${url} presents certificate ${after}, not the pinned ${before} (from ` +
        `profile default): nothing sent. If the server's certificate was replaced on purpose, run ` +
        `'agentowl login --url ${url}' again`,
    );
    expect(await tenantListings(url)).toBe(listed);

    // Logging in again without confirming the new certificate is refused, naming both.
    const unconfirmed = oneLine(await cli(["login"], at, {}, TOKEN), 2);
    expect(unconfirmed).toContain(`CHANGED: the profile pinned ${before}`);
    const again = await cli(["login", "--fingerprint", after], at, {}, TOKEN);
    expect(again.code, again.stderr).toBe(0);
    expect((await cli(["tenants", "ls"], at)).code).toBe(0);
  });
});

/** Whether this process may make a network namespace (root, and unshare(1) present). */
function canUnshare(): boolean {
  try {
    return (
      Bun.spawnSync(["unshare", "-n", "true"]).exitCode === 0 &&
      Bun.spawnSync(["sh", "-c", "command -v ip"]).exitCode === 0
    );
  } catch {
    return false;
  }
}

describe("plain http:// to another host", () => {
  test.skipIf(!canUnshare())("the CLI warns that the token travels in clear, before it connects", async () => {
    // In a namespace of its own, where 10.255.0.1 is a local address nothing listens on.
    const at = place();
    const argv = [...agentowlArgv(["tenants", "ls"])];
    const proc = Bun.spawn(
      [
        "unshare",
        "-n",
        "sh",
        "-c",
        'ip link set lo up && ip addr add 10.255.0.1/32 dev lo && exec "$@"',
        "sh",
        ...argv,
      ],
      {
        cwd: at.work,
        env: agentowlEnv({
          HOME: at.home,
          XDG_CONFIG_HOME: "",
          AGENTOWL_URL: "http://10.255.0.1:9",
          AGENTOWL_TOKEN: TOKEN,
        }),
        stdout: "pipe",
        stderr: "pipe",
        timeout: 20_000,
        killSignal: "SIGKILL",
      },
    );
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(1);
    expect(stderr.trimEnd().split("\n")).toEqual([
      "warning: http://10.255.0.1:9 is plain HTTP: the API token travels in clear on the network (use https://)",
      "agentowl tenants ls: cannot reach agentowl at http://10.255.0.1:9: connection refused",
    ]);
  });
});

describe("the plain-HTTP listener (http_plain_listen)", () => {
  test.skipIf(!canUnshare())(
    "a client that is not loopback gets /healthz and the webhooks of plain_http bindings, and one 403 for everything else; loopback gets everything",
    async () => {
      const child = resolve(import.meta.dir, "..", "fixtures", "plain-listener-child.ts");
      const proc = Bun.spawn(
        [
          "unshare",
          "-n",
          "sh",
          "-c",
          'ip link set lo up && ip addr add 10.255.0.1/32 dev lo && exec "$0" "$1"',
          process.execPath,
          child,
        ],
        {
          stdout: "pipe",
          stderr: "pipe",
          timeout: 45_000,
          killSignal: "SIGKILL",
        },
      );
      const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      expect(code, err).toBe(0);
      const lines = out
        .trim()
        .split("\n")
        .map(
          (l) =>
            JSON.parse(l) as {
              name?: string;
              status?: number;
              type?: string;
              detail?: string;
              done?: boolean;
              https?: string;
            },
        );
      const done = lines.at(-1)!;
      expect(done.done).toBe(true);
      const status = Object.fromEntries(lines.filter((l) => l.name).map((l) => [l.name, l.status]));
      expect(status).toEqual({
        "loopback creates a tenant": 201,
        "loopback creates a plain binding": 201,
        "loopback creates a TLS-only binding": 201,
        "loopback lists tenants": 200,
        "lan healthz": 200,
        "lan webhook to a plain binding": 202,
        "lan webhook to a TLS-only binding": 403,
        "lan webhook to an unknown binding": 403,
        "lan webhook to an unknown tenant": 403,
        "lan lists tenants with a token": 403,
        "lan signs in": 403,
        "lan metrics": 403,
        "lan readyz": 403,
        "lan telnyx": 403,
      });
      // One answer for all refusals: a binding that did not opt in cannot be told from one that does not exist.
      const refusals = lines.filter((l) => l.status === 403);
      for (const r of refusals) {
        expect(r.type).toBe("application/problem+json");
        expect(r.detail).toBe(
          `this plain-HTTP listener serves only /healthz and the webhooks of bindings with plain_http: true; use ${done.https}`,
        );
      }
    },
  );
});
