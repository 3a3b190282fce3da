/**
 * The first start on an empty data dir leaves the person at the terminal able to act: an admin
 * token (once, on the terminal only), the URLs served and the next command. `script` gives the
 * server a real terminal, as `npm start` in a shell has.
 */
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  agentowlArgv,
  agentowlEnv,
  killLeftovers,
  Running,
  startAgentowl,
  stopUnderTerminal,
} from "../helpers/process.ts";

setDefaultTimeout(30_000);
const root = mkdtempSync(join(tmpdir(), "agentowl-first-start-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(killLeftovers);

const envFor = (dir: string) => ({
  AGENTOWL_DATA_DIR: join(root, dir),
  AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
  AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
});
const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

/** `agentowl serve` with a terminal on stdin, stdout and stderr (util-linux script). */
function serveOnTerminal(env: Record<string, string>): Running {
  const proc = Bun.spawn(["script", "-qfec", agentowlArgv(["serve"]).map(shellQuote).join(" "), "/dev/null"], {
    cwd: root,
    env: agentowlEnv(env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return new Running(proc);
}

const TOKEN = /\b(aow_[A-Za-z0-9_-]{43})\b/;

describe.if(Bun.which("script") !== null)("the first start", () => {
  test("on a terminal: prints a first admin token once, the URLs and the next command; the token works", async () => {
    const env = envFor("tty");
    const first = serveOnTerminal(env);
    try {
      // The banner is written at once but may arrive in pieces: wait for its last line.
      const all = await first.waitFor("the banner's next command", () => {
        const text = first.lines.join("\n");
        return / apply -f \S+\.yaml/.test(text) ? text : null;
      });
      const token = TOKEN.exec(all)?.[1];
      expect(token).toBeDefined();
      const url = /API, webhooks and \/metrics at (http\S+),/.exec(all)?.[1];
      expect(url).toBeDefined();
      expect(all).toContain(`export AGENTOWL_TOKEN=${token} AGENTOWL_URL=${url}`);
      expect(all).toMatch(/ apply -f \S+\.yaml/);
      // The JSON log lines never carry it.
      for (const line of first.lines.filter((l) => l.startsWith("{"))) expect(line).not.toContain(token);
      const tokens = await fetch(`${url}/v1/tokens`, { headers: { authorization: `Bearer ${token}` } });
      expect(tokens.status).toBe(200);
    } finally {
      await stopUnderTerminal(first);
    }

    const second = serveOnTerminal(env);
    try {
      await second.waitFor("serving", () => second.lines.some((l) => l.includes('"agentowl serving"')));
    } finally {
      await stopUnderTerminal(second);
    }
    // Everything it printed, up to its exit: no token, no second banner.
    expect(second.lines.join("\n")).not.toMatch(TOKEN);
    expect(second.lines.join("\n")).not.toContain("First admin");
  });

  test("without a terminal (a service, a log file): no token is made; the log says how to get one", async () => {
    const server = startAgentowl(["serve"], { cwd: root, env: envFor("service") });
    const hint = await server.waitForLog("no admin API token exists yet");
    expect(String(hint.next)).toMatch(/run '.+ init' \(it prints one, once\)/);
    expect(server.stderr).toBe("");
    expect(server.lines.join("\n")).not.toMatch(TOKEN);
    server.proc.kill("SIGTERM");
    await server.exit(15_000);
  });
});
